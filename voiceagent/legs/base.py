"""The call-leg contract the session runs a call through (CallLeg, Clock, DtmfDigit, LegClosed,
TransferResult, played_out). It is defined in `telephony.leg`, next to the transports that implement
it, so that `telephony/` imports nothing from `voiceagent/`; the names are re-exported here for the
agent's own legs (file, memory) and the session. `ScriptedTransfer` is the agent's own: only the
legs without a far end use it.
"""

from __future__ import annotations

from telephony.leg import CallLeg, Clock, DtmfDigit, LegClosed, LegWrapper, TransferResult, played_out

__all__ = ["CallLeg", "Clock", "DtmfDigit", "LegClosed", "LegWrapper", "ScriptedTransfer", "TransferResult",
           "played_out"]


class ScriptedTransfer:
    """transfer() for the legs without a far end (file, memory): records what was asked and
    answers as scripted (`transfer_ok`, and `transfer_status` when it fails)."""

    def _init_transfers(self) -> None:
        self.transfers: list[str] = []
        self.handoffs: list[dict | None] = []
        self.transfer_ok = True
        self.transfer_status = "busy"  # what a failed transfer reports (busy, no_answer, rejected...)

    async def transfer(self, target: str, summary: dict | None = None) -> "TransferResult":
        self.transfers.append(target)
        self.handoffs.append(summary)
        return TransferResult(True) if self.transfer_ok else TransferResult(False, self.transfer_status)
