"""Filters every Kastro role may use (ansible.cfg: filter_plugins); each role's own filters
are in its filter_plugins/. The logic lives in the kastro package (tested there)."""

from __future__ import annotations

from typing import Any

from kastro.backup import state as backup
from kastro.controller.filters import ansible_filter, secrets_dir_filter
from kastro.inventory.infra import host_time, host_updates
from kastro.inventory.published import gateway_uplinks, published_tcp_ports, uplink_state
from kastro.monitoring import events
from kastro.monitoring.deploy import alertmanager_endpoint
from kastro.monitoring.topology import MonitoringModelError
from kastro.nis2.discovery import discovery


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kastro_secrets_dir": secrets_dir_filter,
            # A gateway's uplink interface and its addresses there (links role, the lab).
            "kastro_uplink": ansible_filter(uplink_state),
            # Every uplink of a gateway: port, addresses, ISP router, probes, table (uplinks role).
            "kastro_uplinks": ansible_filter(gateway_uplinks),
            # Kastro's own flows (kastro.inventory.infra): chrony's sources and clients (base),
            # the apt cache or the proxy through it (updates).
            "kastro_host_time": ansible_filter(host_time),
            "kastro_host_updates": ansible_filter(host_updates),
            # The TCP ports published for a host (the lab's stand-in website listens there).
            "kastro_published_tcp_ports": ansible_filter(published_tcp_ports),
            # Where a sensor's alerts go: its municipality's Alertmanager (monitor, suricata).
            "kastro_alertmanager_endpoint": ansible_filter(
                alertmanager_endpoint, MonitoringModelError
            ),
            # The sensors' events to the collector (roles event_shipping, event_collector).
            "kastro_events_shipping": ansible_filter(events.shipping, MonitoringModelError),
            "kastro_events_collecting": ansible_filter(events.collecting, MonitoringModelError),
            "kastro_events_shipper_config": ansible_filter(
                events.shipper_file, MonitoringModelError, model=False
            ),
            "kastro_events_collector_config": ansible_filter(
                events.collector_file, MonitoringModelError, model=False
            ),
            "kastro_events_host_table": ansible_filter(
                events.collector_table, MonitoringModelError, model=False
            ),
            # What each gateway's kastro-discover compares its zones with (role discovery).
            "kastro_discovery": ansible_filter(discovery),
            # Backups (roles backup_credentials, backup, backup_server): kastro.backup.state.
            "kastro_backup_credentials": ansible_filter(
                backup.credentials, backup.BackupModelError
            ),
            "kastro_backup_client": ansible_filter(backup.client_state, backup.BackupModelError),
            "kastro_backup_server": ansible_filter(backup.server_state, backup.BackupModelError),
            "kastro_backup_authorized_keys": ansible_filter(
                backup.authorized_keys, backup.BackupModelError, model=False
            ),
            "kastro_backup_passphrase_files": ansible_filter(
                backup.passphrase_files, backup.BackupModelError, model=False
            ),
            "kastro_backup_known_hosts": ansible_filter(
                backup.known_hosts, backup.BackupModelError, model=False
            ),
        }
