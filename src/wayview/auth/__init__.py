"""wayview.auth: tokens, secrets and passwords."""
