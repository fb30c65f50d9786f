"""The operator's surface: health and readiness, /admin/* (targets, config, reload, route
dry run, traces, events), feedback, the /ui dashboard and its sign-in, and who may use them
(`access`)."""
