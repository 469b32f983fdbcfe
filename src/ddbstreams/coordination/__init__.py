"""Layer 6, coordination: worker groups sharing a stream through leases (to come)."""
