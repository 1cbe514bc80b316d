"""What latentfeed keeps on object storage: local folders and S3 behind one interface, the Delta
feature table, stored latent types, leases, the champion history and the quarantine."""
