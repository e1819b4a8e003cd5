"""The engine: how the services run and talk (jina is used here and in services/ only).

    services.py     the one declared list of services (flow.yml, compose and k8s are checked against it)
    executor.py     the executors' base class: settings, logger, pass-through
    serve.py        `clipseek serve`: the Flow's processes, started, watched and stopped
    deploy.py       Kubernetes manifests and the containers' health check
    torch_free.py   keeping torch out of the processes that run no model
"""
