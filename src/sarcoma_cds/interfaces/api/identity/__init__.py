"""Identity and access (issue 12): who is calling (:mod:`.principal`), what each role may do
(:mod:`.roles`), sign-in with OpenID Connect (:mod:`.oidc`, :mod:`.routes`), the app's identity
mode and session cookie (:mod:`.state`) and the refusals (:mod:`.errors`).

Routes receive the principal from the dependencies in ``interfaces/api/deps.py``.
"""
