"""Marketo Engage REST API: classification, client, source and sink."""
