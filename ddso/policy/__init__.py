"""Decision policy: eligibility, consent, contact caps and the choice of an action."""
