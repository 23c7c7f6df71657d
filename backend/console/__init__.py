"""The officer console: a held truck's evidence in a browser, and the officer's decision.

``desk.py`` reads the queue of held trucks and the lanes' overview from the store's events;
``auth.py`` is the door (users, sessions, CSRF, login limits); ``actions.py`` signs and sends
an officer's release, refusal or re-weigh request, audited in ``audit.py``; ``server.py``
serves the pages and their JSON; ``serve.py`` wires it all; ``cli.py`` is
``python -m backend.console``.
"""
