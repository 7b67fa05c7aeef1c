"""The SMPP 3.4 provider: binds to an SMSC, submits parts, hands receipts and inbound on."""
