"""Spoof DNS responses.

In this example, we fiddle with IPv6 (AAAA) records:
 - For example.com, `::1` is returned.
 - For any other domain, all AAAA records are removed.
"""
import ipaddress

from fastproxy import dns


def dns_request(flow: dns.DNSFlow) -> None:
    q = flow.request.question
    if q and q.type == dns.types.AAAA:
        if q.name == "example.com":
            flow.response = flow.request.succeed([
                dns.ResourceRecord(name="example.com", type=dns.types.AAAA, class_=dns.classes.IN,
                                   ttl=dns.ResourceRecord.DEFAULT_TTL,
                                   data=ipaddress.ip_address("::1").packed)
            ])
        else:
            flow.response = flow.request.fail(0)
