"""The only code that touches the host kernel: mounts, netlink, iptables, cgroups, namespaces."""
