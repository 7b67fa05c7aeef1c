"""The `rsms` command: operators' tools and the way each service is started."""
