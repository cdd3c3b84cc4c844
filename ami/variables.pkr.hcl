# Inputs of ami/dlenv.pkr.hcl. Only `scripts` and `ssh_cidr` have no usable default:
#
#   dlenv ami script --out build --python uv --user ubuntu
#   packer build -var scripts=build -var ssh_cidr=203.0.113.9/32 ami/
#
# Validation rules use only functions Packer 1.6.6 has (no regex there).

variable "scripts" {
  type        = string
  default     = ""
  description = "Directory written by `dlenv ami script --out DIR`: provision.sh, cleanup.sh, stack-fingerprint, uploads/ (plus wheelhouse/ or installers/ when the scripts expect them)."

  validation {
    condition     = fileexists("${var.scripts}/provision.sh") && fileexists("${var.scripts}/cleanup.sh") && fileexists("${var.scripts}/stack-fingerprint")
    error_message = "The scripts variable must name the directory `dlenv ami script --out DIR` wrote (provision.sh, cleanup.sh, stack-fingerprint): run it first, then pass -var scripts=DIR."
  }
}

variable "ssh_cidr" {
  type        = string
  default     = ""
  description = "The only source allowed to reach the builder's SSH port: your public IP as a /32. Packer 1.6.6 cannot detect it itself."

  validation {
    condition     = length(split("/", var.ssh_cidr)) == 2 && var.ssh_cidr != "0.0.0.0/0" && var.ssh_cidr != "::/0"
    error_message = "The ssh_cidr variable must be your public IP as a CIDR, e.g. -var ssh_cidr=203.0.113.9/32 (0.0.0.0/0 is refused, and so is ::/0: the builder would be open to the internet)."
  }
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region to build in; the image stays there (dlenv up looks for images in its own region)."
}

variable "instance_type" {
  type        = string
  default     = "g4dn.xlarge"
  description = "Builder type. Use a GPU type (NVIDIA) unless the scripts were rendered with --cpu: the driver is installed and verified on the builder."
}

variable "spot" {
  type        = bool
  default     = false
  description = "Build on a spot instance (Packer bids the current spot price: spot_price = auto)."
}

variable "base" {
  type        = string
  default     = "ubuntu-24.04"
  description = "Base image, as dlenv's --ami names it (tag dlenv:base): ubuntu-24.04, ubuntu-22.04 or debian-12."

  validation {
    condition     = contains(["ubuntu-24.04", "ubuntu-22.04", "debian-12"], var.base)
    error_message = "The base variable must be ubuntu-24.04, ubuntu-22.04 or debian-12."
  }
}

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "x86_64 or arm64; must match the instance type."

  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch variable must be x86_64 or arm64."
  }
}

variable "source_ami" {
  type        = string
  default     = ""
  description = "Start from this AMI id instead of the newest image of the base's publisher (e.g. the id Canonical's SSM parameter names). It must be an image of the base."
}

variable "disk" {
  type        = number
  default     = 100
  description = "Root volume size in GB (gp3, encrypted); instances launched from the image get at least this."
}
