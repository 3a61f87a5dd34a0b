"""On-device bench and CI regression gates for exported facelm models. numpy + the installed runtimes; no torch."""
