"""Microsoft Teams: the Microsoft 365 Agents SDK behind Boeket's adapter protocol."""
