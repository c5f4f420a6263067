"""The ``modelsync`` console command: one entry point for every daemon and tool.

It sits above the packages it starts (``master``, ``remote_model_puller``, ``config_manager``,
``tfserving``) and the shared library ``modelsync``, which knows none of them."""
