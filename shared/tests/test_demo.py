"""`pathways demo` tells what became of the need NACRO declined, as the referrals service
reports it once the decline has settled (not the state it read before the decline arrived)."""

from pathways_shared.demo import after_decline, settled_after_decline

DECLINED = "CRS-ACC-M"


def need(status: str, service_code: str | None, **fields) -> dict:
    return {"status": status, "service_code": service_code, **fields}


def test_the_need_still_with_the_declining_service_has_not_settled() -> None:
    for status in ("allocated", "acknowledged", "declined"):
        still = need(status, DECLINED, provider_code="NACRO")
        assert not settled_after_decline(still, DECLINED)
        assert after_decline(still, DECLINED) == f"not settled yet: still {status} with {DECLINED}"


def test_an_unallocated_need_says_why() -> None:
    left = need("unallocated", None, status_reason="no eligible service left")
    assert settled_after_decline(left, DECLINED)
    assert after_decline(left, DECLINED) == "unallocated: no eligible service left"


def test_a_need_routed_to_another_service_names_it() -> None:
    moved = need("allocated", "CFO3-ETE", provider_code="IXION", programme="CFO3")
    assert settled_after_decline(moved, DECLINED)
    assert after_decline(moved, DECLINED) == "routed again: CFO3-ETE (IXION, CFO3), allocated"
