"""Programs that run on the hosts Kastro manages, as root or as their own service accounts.

Built into one archive (kastro-host.pyz, see kastro.host.archive) and installed by the
host_programs role; the roles' wrappers in /usr/local/sbin run them. On a host they may use
the standard library and python3-prometheus-client only, never the controller's packages
(a test checks the imports). Parsers of command output are pure functions, tested on
recorded output; commands go through kastro.host.commands; metrics through
kastro.host.textfile.
"""
