"""Ray Serve applications of ddso; each module exports a typed build_app(args)."""
