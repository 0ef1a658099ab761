"""Asterisk configuration for the PBX the platform runs beside: ``render`` (pure: parameters in, file
texts out, jinja2 templates in ``templates/``) and ``wiring`` (the platform's settings to parameters)."""
