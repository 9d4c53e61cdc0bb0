"""Everything that receives input: the hospital API (and, later, chat updates and webhooks)."""
