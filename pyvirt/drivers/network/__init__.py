"""The virtual network driver (libvirt's bridge driver): NAT and isolated networks
on a bridge of their own, with dnsmasq for DHCP and DNS and nftables for NAT, and
``forward mode='bridge'`` networks onto an existing host bridge."""
