"""The jackrabbit conformance suite: black-box scenarios of the external contract.

It runs against both shells (``python -m pytest conformance``) or against any server
(``python -m conformance --url wss://HOST:PORT --ca CA.pem``); see ``conformance/README.md``.
"""
