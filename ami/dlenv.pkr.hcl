# A dlenv image built by Packer: the same scripts `dlenv ami bake` runs, the same tags, so
# `dlenv up` and `dlenv ami list` use it like one of their own.
#
#   dlenv ami script --out build --python uv --user ubuntu   # provision.sh, cleanup.sh, stack-fingerprint
#   packer build -var scripts=build -var ssh_cidr=203.0.113.9/32 ami/
#
# Written for Packer 1.6.6 (what Debian 12 ships and what dlenv's CI validates with); newer
# Packer with the Amazon plugin installed should take it unchanged (not tried: CI has only 1.6.6).
# Lines for newer Packer are kept as comments marked "Packer >= ..."; README.md says what each adds.
#
# Why the scripts are rendered before `packer build` and not by a shell-local provisioner: Packer
# evaluates the image's tags when it reads this template, before any provisioner runs. Reading
# the tags (stack fingerprint, Python manager, GPU) from the very files it uploads makes an image
# whose tags disagree with what was installed on it impossible.

packer {
  required_version = ">= 1.6.6"
  # Packer >= 1.7 (needed from 1.10 on, where the Amazon builder left the core):
  # required_plugins {
  #   amazon = {
  #     version = ">= 1.2.2"
  #     source  = "github.com/hashicorp/amazon"
  #   }
  # }
}

# Packer >= 1.7: Canonical's SSM parameter instead of the name filter below, then
# source_ami = data.amazon-parameterstore.ubuntu.value
# data "amazon-parameterstore" "ubuntu" {
#   name   = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
#   region = var.region
# }

locals {
  # The publishers' images, as src/dlenv/cloud/ami.py finds them when SSM is not used.
  bases = {
    "ubuntu-24.04" = {
      owner       = "099720109477" # Canonical
      name        = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-%s-server-*"
      user        = "ubuntu"
      root_device = "/dev/sda1"
    }
    "ubuntu-22.04" = {
      owner       = "099720109477"
      name        = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-%s-server-*"
      user        = "ubuntu"
      root_device = "/dev/sda1"
    }
    "debian-12" = {
      owner       = "136693071363" # Debian
      name        = "debian-12-%s-*"
      user        = "admin"
      root_device = "/dev/xvda"
    }
  }
  base = local.bases[var.base]
  # Ubuntu and Debian name their images amd64/arm64; EC2 says x86_64/arm64.
  image_arch = var.arch == "arm64" ? "arm64" : "amd64"

  # What the scripts were rendered with, read from the files this build uploads. Packer 1.6.6 has
  # no regex functions, hence split(). tests/ami/test_packer.py checks every value against
  # `dlenv ami script` output, so a change of the script's layout fails there, not in a build.
  provision = file("${var.scripts}/provision.sh")
  stack     = trimspace(file("${var.scripts}/stack-fingerprint"))
  # line 2: "# dlenv provisioning script: stack fe91d1210dac, profile vm, python uv. Generated ..."
  python = split(".", split(", python ", split("\n", local.provision)[1])[1])[0]
  # Scripts rendered without --cpu carry the GPU steps; the build then insists they ran.
  gpu           = length(split("\n# ---- step: nvidia-driver ", local.provision)) > 1
  driver_branch = local.gpu ? split(" ", split("\n", split("\ndlenv_driver_ok ", local.provision)[1])[0])[0] : "none"
  cuda          = local.gpu ? split("\n", split("\" dlenv_nvcc_ok ", local.provision)[1])[0] : "none"

  created = timestamp()
  # dlenv.cloud.images.image_name; Packer 1.6.6's formatdate() drops a quoted trailing 'Z'
  image_name = "dlenv-${local.stack}-${var.base}-${local.python}-${formatdate("YYYYMMDD'T'hhmmss", local.created)}Z"

  # The tags `dlenv ami bake` sets (src/dlenv/bake.py image_tags, cloud/images.py create).
  # `dlenv up` picks the newest available image whose dlenv:stack, dlenv:base, dlenv:python and
  # architecture match; dlenv:user is the login user it then connects as.
  tags = {
    "Name"                = local.image_name
    "dlenv:baked"         = "true"
    "dlenv:stack"         = local.stack
    "dlenv:base"          = var.base
    "dlenv:os"            = var.base
    "dlenv:python"        = local.python
    "dlenv:user"          = local.base.user
    "dlenv:source-ami"    = "{{ .SourceAMI }}"
    "dlenv:created"       = local.created
    "dlenv:gpu"           = local.gpu ? "yes" : "no"
    "dlenv:driver-branch" = local.driver_branch
    "dlenv:cuda"          = local.cuda
    "dlenv:builder"       = "packer"
  }

  remote    = "/var/tmp/dlenv-ami" # survives the reboot; the cleanup empties /var/tmp
  sudo      = "sudo bash -eu '{{ .Path }}'"
  sudo_vars = "sudo {{ .Vars }} bash -eu '{{ .Path }}'"
}

source "amazon-ebs" "dlenv" {
  region        = var.region
  instance_type = var.instance_type
  spot_price    = var.spot ? "auto" : ""
  ssh_username  = local.base.user
  ssh_timeout   = "15m"

  source_ami = var.source_ami
  dynamic "source_ami_filter" {
    for_each = var.source_ami == "" ? [local.base] : []
    content {
      filters = {
        name                = format(source_ami_filter.value.name, local.image_arch)
        architecture        = var.arch
        virtualization-type = "hvm"
        root-device-type    = "ebs"
      }
      owners      = [source_ami_filter.value.owner]
      most_recent = true
    }
  }

  # Packer creates a key pair and a security group for the build and deletes both afterwards.
  # The group admits SSH from ssh_cidr only.
  # Packer >= 1.8 (Amazon plugin >= 1.0.7) can find the IP itself:
  # temporary_security_group_source_public_ip = true
  temporary_security_group_source_cidrs = [var.ssh_cidr]

  # Packer >= 1.7 requires IMDSv2 on the builder:
  # metadata_options {
  #   http_endpoint               = "enabled"
  #   http_tokens                 = "required"
  #   http_put_response_hop_limit = 1
  # }
  # Amazon plugin >= 1.2.2 marks the image itself IMDSv2-only:
  # imds_support = "v2.0"

  launch_block_device_mappings {
    device_name           = local.base.root_device
    volume_size           = var.disk
    volume_type           = "gp3"
    iops                  = 3000 # gp3's baseline, what dlenv up launches with
    throughput            = 125  # Packer 1.6.6 insists on a value for gp3
    encrypted             = true
    delete_on_termination = true
  }

  ami_name        = local.image_name
  ami_description = "dlenv stack ${local.stack} (${var.base})"
  tags            = local.tags
  snapshot_tags   = local.tags
  run_tags = {
    "Name"       = "dlenv-packer-builder"
    "dlenv:role" = "ami-builder"
  }
  run_volume_tags = {
    "Name"       = "dlenv-packer-builder"
    "dlenv:role" = "ami-builder"
  }

  # A fresh 100 GB snapshot can take longer than the default 10 minutes to become available.
  aws_polling {
    delay_seconds = 15
    max_attempts  = 240
  }
}

build {
  sources = ["source.amazon-ebs.dlenv"]

  # 1. Upload the scripts directory (with its wheelhouse/, installers/ and uploads/, if any).
  provisioner "shell" {
    inline = ["rm -rf ${local.remote}", "mkdir -p ${local.remote}"]
  }
  provisioner "file" {
    source      = "${var.scripts}/"
    destination = local.remote
  }

  # 2. Check the scripts fit this image (rendered for its login user; wheels present when they
  #    install from a wheelhouse), then move wheelhouse/, installers/ and uploads/ where they
  #    expect them.
  provisioner "shell" {
    script           = "${path.root}/prepare.sh"
    environment_vars = ["DLENV_SCRIPTS=${local.remote}", "DLENV_LOGIN_USER=${local.base.user}"]
    execute_command  = local.sudo_vars
  }

  # 3. Provision: every step is check-then-apply, so running the script again is cheap and safe.
  provisioner "shell" {
    execute_command = local.sudo
    inline          = ["bash ${local.remote}/provision.sh"]
  }

  # 4. A step that needs a reboot (the NVIDIA driver replacing nouveau) touches
  #    /var/run/reboot-required and the script goes on; reboot now if one did.
  provisioner "shell" {
    execute_command   = local.sudo
    expect_disconnect = true
    inline            = ["if [ -e /var/run/reboot-required ]; then echo 'rebooting the builder: a step asked for it (see above)'; systemctl reboot; fi"]
  }

  # 5. Run it again after the reboot: the driver check now passes (or the step applies again).
  provisioner "shell" {
    execute_command     = local.sudo
    pause_before        = "30s"
    start_retry_timeout = "15m"
    inline              = ["bash ${local.remote}/provision.sh"]
  }
  # Nothing may still want a reboot, and GPU scripts must have found the GPU (dlenv:gpu=yes).
  provisioner "shell" {
    script           = "${path.root}/verify.sh"
    environment_vars = ["DLENV_SCRIPTS=${local.remote}"]
    execute_command  = local.sudo_vars
  }

  # 6. Clean for imaging and validate (exits 1 naming anything instance-specific that is left).
  #    It removes the uploaded scripts too (/var/tmp is emptied); nothing runs over SSH after
  #    it, and Packer stops the instance through the EC2 API before creating the image.
  provisioner "shell" {
    execute_command = local.sudo
    inline          = ["bash ${local.remote}/cleanup.sh"]
  }
}
