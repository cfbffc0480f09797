"""Running tenant code out of process: the Worker Loader and what it stands on.

The flow, host to tenant::

    loader.Loader.get(id, get_code) -> WorkerStub -> EntrypointStub.fetch / rpc / run
        code.WorkerCode: the tenant's code, validated
        pool.WorkerPool: warm, confined workers (process.WorkerProcess), forked by the fork
                         server (zygote.py; its host handle is forkserver.ZygoteProcess)
            framing.py + protocol.py: versioned msgpack messages over a socketpair
                worker.py: the child's event loop, tenant modules loaded by runtime.py
        outbound.py: the tenant's global fetch, performed by the host
        bridge.py: a workflow ``run`` whose steps are durable on the host's engine

confine.py applies the isolation layers (namespaces, rlimits, Landlock, seccomp) in a
freshly forked child; :class:`loader.InProcessLoader` runs trusted code in the host instead.
"""
