"""The migration link: line rate, payload efficiency, latency, TCP window, vMotion vmknics."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import check_range
from .checks import check_fields


@dataclass(frozen=True)
class Network:
    """A point-to-point migration path.

    ``efficiency`` is the share of the line rate left for payload after Ethernet/IP/TCP
    framing (1500-byte MTU: 1448 payload bytes per 1538 bytes on the wire ≈ 0.94).
    ``stream_gbit_s`` caps what one TCP stream achieves (one sender thread).  How many
    streams a migration opens is the migration software's: QEMU one, or
    ``policy.multifd_channels``; Xen one; Hyper-V one, or ``policy.smb_channels`` over SMB
    (:meth:`lmtoolkit.policies.base.Policy.streams` and the policies' own).  ``streams`` is
    the one count the network decides: the vMotion-enabled VMkernel adapters, which vMotion
    opens a stream each over (Broadcom KB 323379; :mod:`lmtoolkit.policies.vmware`).  A
    policy that does not read it refuses a value other than 1
    (:meth:`~lmtoolkit.policies.base.Policy.network_streams_unused`, checked by
    :class:`~lmtoolkit.scenario.Scenario`).  Parallel streams lift the per-stream cap, never
    the line rate.  ``background_gbit_s`` is other traffic sharing the link (0 = dedicated
    migration network).

    Long distance: one TCP stream carries at most one window per round trip, so
    ``tcp_window_mib`` (null = unlimited, e.g. autotuned and large enough) caps each stream
    at ``window / RTT`` with ``RTT = 2 x latency_ms`` (Mathis et al. / RFC 1323's
    bandwidth-delay product).  Typical windows: Linux ``net.ipv4.tcp_rmem`` max 6 MiB by
    default; ESXi ``Migrate.SndBufSize``/``RcvBufSize`` 562 540 bytes (vMotion socket buffers;
    vMotion supports RTT up to 150 ms — VMware docs, "vSphere vMotion Networking
    Requirements").  Parallel streams multiply the cap, never beyond the line rate: a
    window-limited migration gets ``min(line, streams x window / RTT)``, with the policy's
    streams.
    """

    bandwidth_gbit_s: float = 10.0
    latency_ms: float = 0.2
    efficiency: float = 0.94
    streams: int = 1
    stream_gbit_s: float = 40.0
    background_gbit_s: float = 0.0
    tcp_window_mib: float | None = None

    def __post_init__(self):
        check_fields(self)
        check_range("bandwidth_gbit_s", self.bandwidth_gbit_s, 0, None, lo_open=True, finite=True)
        check_range("latency_ms", self.latency_ms, 0, 60_000)  # one way; beyond a minute nothing migrates
        check_range("efficiency", self.efficiency, 0, 1, lo_open=True)
        check_range("streams", self.streams, 1, 1024)
        check_range("stream_gbit_s", self.stream_gbit_s, 0, None, lo_open=True)
        check_range("background_gbit_s", self.background_gbit_s, 0, self.bandwidth_gbit_s, hi_open=True)
        if self.tcp_window_mib is not None:
            check_range("tcp_window_mib", self.tcp_window_mib, 0, None, lo_open=True)

    @property
    def stream_payload_bytes_s(self) -> float:
        """Payload one stream carries: its sender's rate, and at most one window per RTT."""
        cap = self.stream_gbit_s * 1e9 * self.efficiency / 8.0
        if self.tcp_window_mib is not None and self.rtt_s > 0:
            cap = min(cap, self.tcp_window_mib * 1024**2 / self.rtt_s)
        return cap

    def payload_bytes_s(self, streams: int | None = None) -> float:
        """Payload throughput (bytes/s) available to the migration."""
        n = self.streams if streams is None else streams
        line = (self.bandwidth_gbit_s - self.background_gbit_s) * 1e9 * self.efficiency / 8.0
        return min(line, n * self.stream_payload_bytes_s)

    @property
    def rtt_s(self) -> float:
        return 2.0 * self.latency_ms / 1000.0
