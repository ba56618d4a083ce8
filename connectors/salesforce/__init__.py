"""Salesforce REST API: classification, client, and the Tasks sink."""
