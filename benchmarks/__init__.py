"""jackrabbit beside the queues users would pick instead, measured in one run.

``python -m benchmarks`` starts jackrabbit's two shells and the peer brokers (RabbitMQ, NATS
JetStream, Redis Streams) on 127.0.0.1, drives the same workloads against each from separate
load-generator processes (:mod:`benchmarks.agent`), and writes Markdown tables of figures and
ratios to jackrabbit asyncio plus a PNG chart under ``benchmarks/results/``.

Layout, one job per module:

- ``cli``: the command line and the order of the run; ``plan``: how big each step is.
- ``peers/``: start and stop one server each (jackrabbit, rabbitmq, nats, redis).
- ``drivers/``: one client adapter per system, used inside the agent processes.
- ``agent``: a producer or consumer process; ``fleet``: the orchestrator's side of agents.
- ``workloads/``: throughput, latency, failover, memory, profile.
- ``limits/``: the ceilings measured in the same run (rocksdict, TLS, wsproto).
- ``stats``, ``payload``, ``results``, ``report``, ``chart``: pure helpers and the output.
"""
