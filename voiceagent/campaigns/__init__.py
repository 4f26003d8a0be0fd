"""Outbound marketing campaigns."""
