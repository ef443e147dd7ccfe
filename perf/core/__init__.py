"""What every benchmark shares (perf/__init__.py lists the modules): set-up of the stack, the services
and the publisher, the measurements, the CPU slices, and the JSON document of the results."""
