"""Networks: the network service, drivers, IPAM, embedded DNS."""
