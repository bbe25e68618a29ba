"""myocds: CDS Hooks 2.0 service for statin myopathy, anti-HMGCR IMNM and IVIG stewardship."""
