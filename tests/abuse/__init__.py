"""Abuse tests: each one is a way an attacker or an unlucky user broke a promise (issue 13)."""
