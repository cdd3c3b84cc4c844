"""The one SSH layer: targets, one host-key trust model for paramiko and OpenSSH alike, the
ssh_config writer, sessions, tunnels and remote-command quoting."""
