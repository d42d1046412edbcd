"""Attack tests (issue 12): each reproduces an attack on the service as an attacker would make it,
and checks that it fails. docs/security.md names the control each one proves."""
