"""OCI runtime: spec builder, bundles, the conmon + runc driver. The only place that execs them."""
