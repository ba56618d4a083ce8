"""Local stand-ins for the remote APIs actions-sync talks to.

Marketo, Salesforce and a Confluent schema registry cannot be reached from a developer
machine or CI, so these servers speak the subset of their REST APIs that the product uses
(auth, batch limits, rate limits, error codes) with seeded fault injection and a journal
of requests that tests assert on. They import nothing of the product but `schemas`.
"""
