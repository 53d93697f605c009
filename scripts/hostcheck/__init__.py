"""`make verify`: checks a deployed host from the controller, the way an outside user sees it.

Every check returns a Result (PASS, FAIL or SKIP with its reason); `scripts/verify.py` runs them for
each host of an inventory and exits non-zero when one failed. The modules hold one concern each:
results (formatting), ports, web (HTTP/HTTPS requests and what their answers must say), tls (the
certificate), limits (the edge's and the API's rate limits), ssh (ssh-audit), inventory (what the
checks read from the inventory and the roles' defaults), and cli (the order the checks run in).
"""
