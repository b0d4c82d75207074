"""Customer tax ids: create (also through `tax_id_data` on customer create), list, retrieve, delete.

As Stripe: `type` must be one of Stripe's tax id types and the value must fit the type's format
(for the types below; other types are stored as given) or the request fails with
`tax_id_invalid` ("Invalid value for eu_vat."). Types Stripe verifies with a government service
(eu_vat against VIES, gb_vat against HMRC, au_abn against the ABR) carry a `verification` object
whose status stays `pending` here: the fake verifies nothing. Sources: docs.stripe.com/api/tax_ids,
docs.stripe.com/billing/customer/tax-ids (types, example values, verification)."""

from __future__ import annotations

import re
from typing import Any

from .. import sharing
from ..common import Ctx, Endpoint, paginate
from ..errors import invalid, missing
from ..validation import EXPAND, LIST, RETRIEVE, Str, path_of

_TYPE_NAMES = """ad_nrt ae_trn al_tin am_tin ao_tin ar_cuit au_abn au_acn au_arn au_wpn aw_tin az_tin ba_tin
    bb_tin bd_bin bf_ifu bg_uic bh_vat bj_ifu bo_tin br_cnpj br_cpf bs_tin bw_vat by_tin ca_bn ca_gst_hst
    ca_pst_bc ca_pst_mb ca_pst_sk ca_qst cd_nif ch_uid ch_vat ci_vat cl_tin cm_niu cn_tin co_nit cr_tin
    cv_nif cz_dic de_stn do_rcn ec_ruc eg_tin es_cif et_tin eu_oss_vat eu_vat fo_vat fr_siren fr_siret
    fr_spi gb_vat ge_vat gh_tin gi_tin gn_nif hk_br hr_oib hu_tin ic_nif id_npwp il_vat in_gst is_kt is_vat
    it_cf jp_cn jp_rn jp_trn ke_pin kg_tin kh_tin kr_brn kz_bin la_tin li_uid li_vat lk_vat ma_vat md_cf
    md_vat me_pib mk_vat mr_nif mu_vat mx_rfc my_frp my_itn my_sst mz_nuit ng_tin no_vat no_voec np_pan
    nz_bn nz_gst om_vat pe_ruc ph_tin pl_nip pt_nif py_ruc ro_tin rs_pib ru_inn ru_kpp sa_vat sg_gst
    sg_uen si_tin sm_coe sn_ninea sr_fin sv_nit th_vat tj_tin tr_tin tt_bir tt_vat tw_vat tz_vat ua_vat
    ug_tin us_ein uy_ruc uz_tin uz_vat ve_rif vn_tin za_vat zm_tin zw_tin"""
TYPES = frozenset(_TYPE_NAMES.split())
_EU = (
    r"(ATU\d{8}|BE[01]\d{9}|BG\d{9,10}|CY\d{8}[A-Z]|CZ\d{8,10}|DE\d{9}|DK\d{8}|EE\d{9}|EL\d{9}"
    r"|ES[A-Z0-9]\d{7}[A-Z0-9]|FI\d{8}|FR[A-HJ-NP-Z0-9]{2}\d{9}|HR\d{11}|HU(\d{8}|\d{11})"
    r"|IE(\d{7}[A-W][A-I]?|\d[A-Z+*]\d{5}[A-W])|IT\d{11}|LT(\d{9}|\d{12})|LU\d{8}|LV\d{11}|MT\d{8}"
    r"|NL\d{9}B\d{2}|PL\d{10}|PT\d{9}|RO\d{2,10}|SE\d{12}|SI\d{8}|SK\d{10}|XI(\d{9}|\d{12}))"
)
FORMATS: dict[str, re.Pattern[str]] = {
    "eu_vat": re.compile(_EU),
    "gb_vat": re.compile(r"GB(\d{9}|\d{12}|GD\d{3}|HA\d{3})"),
    "ch_vat": re.compile(r"CHE-\d{3}\.\d{3}\.\d{3} (MWST|TVA|IVA)"),
    "no_vat": re.compile(r"\d{9}MVA"),
    "au_abn": re.compile(r"\d{11}"),
    "us_ein": re.compile(r"\d{2}-\d{7}"),
}
_VERIFIED = frozenset({"eu_vat", "gb_vat", "au_abn"})
_COUNTRY = {"gb_vat": "GB", "ch_vat": "CH", "no_vat": "NO", "au_abn": "AU", "us_ein": "US"}
TYPE = Str(required=True, nullable=False)
VALUE = Str(required=True, nullable=False)


def check(kind: str, value: str, prefix: str = "") -> None:
    """Refuse an unknown type or a value that does not fit its type, with Stripe's wording;
    `prefix` is where the pair sits in the request (`tax_id_data[0]` on customer create)."""
    if kind not in TYPES:
        raise invalid(f"Invalid type: must be one of {', '.join(sorted(TYPES))}", path_of(prefix, "type"))
    pattern = FORMATS.get(kind)
    compact = value if kind == "ch_vat" else re.sub(r"\s", "", value)
    if pattern is not None and not pattern.fullmatch(compact):
        raise invalid(f"Invalid value for {kind}.", path_of(prefix, "value"), "tax_id_invalid")


def _country(kind: str, value: str) -> str | None:
    if kind == "eu_vat":
        prefix = value[:2].upper()
        return {"EL": "GR", "XI": "GB"}.get(prefix, prefix)
    return _COUNTRY.get(kind) or kind.split("_")[0].upper()


def make(ctx: Ctx, customer_id: str, kind: str, value: str) -> dict[str, Any]:
    tax_id = {
        "id": ctx.store.new_id("txi"),
        "object": "tax_id",
        "country": _country(kind, value),
        "created": ctx.store.now(),
        "customer": customer_id,
        "livemode": False,
        "owner": {"type": "customer", "customer": customer_id},
        "type": kind,
        "value": value,
        "verification": (
            {"status": "pending", "verified_address": None, "verified_name": None}
            if kind in _VERIFIED
            else None
        ),
    }
    ctx.store.put(tax_id)
    ctx.emit("customer.tax_id.created", tax_id)
    sharing.tax_id_made(ctx, tax_id)
    return tax_id


def of_customer(ctx: Ctx, customer_id: str) -> list[dict[str, Any]]:
    return [t for t in ctx.store.newest_first("tax_id") if t["customer"] == customer_id]


MAX_PER_CUSTOMER = 5  # "you can add up to five tax IDs to a customer" (docs.stripe.com/tax/invoicing/tax-ids)


def check_room(count: int, param: str) -> None:
    if count > MAX_PER_CUSTOMER:
        raise invalid(f"A customer can have at most {MAX_PER_CUSTOMER} tax IDs.", param)


def create(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    cust = ctx.store.get("customer", ctx.path["id"])
    check(p["type"], p["value"])
    check_room(len(of_customer(ctx, cust["id"])) + 1, "value")
    return make(ctx, cust["id"], p["type"], p["value"])


def list_(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    cust = ctx.store.get("customer", ctx.path["id"])
    url = f"/v1/customers/{cust['id']}/tax_ids"
    return paginate(ctx, "tax_id", of_customer(ctx, cust["id"]), p, url)


def _own(ctx: Ctx) -> dict[str, Any]:
    cust = ctx.store.get("customer", ctx.path["id"])
    tax_id = ctx.store.get("tax_id", ctx.path["tax_id"])
    if tax_id["customer"] != cust["id"]:
        raise missing("tax_id", ctx.path["tax_id"])  # the same answer as an unknown id
    return tax_id


def retrieve(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return _own(ctx)


def delete(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    tax_id = _own(ctx)
    ctx.store.delete("tax_id", tax_id["id"])
    ctx.emit("customer.tax_id.deleted", tax_id)
    sharing.tax_id_deleted(ctx, tax_id)
    return {"id": tax_id["id"], "object": "tax_id", "deleted": True}


ENDPOINTS = [
    Endpoint("POST", "/v1/customers/{id}/tax_ids", {"type": TYPE, "value": VALUE, "expand": EXPAND}, create),
    Endpoint("GET", "/v1/customers/{id}/tax_ids", LIST, list_),
    Endpoint("GET", "/v1/customers/{id}/tax_ids/{tax_id}", RETRIEVE, retrieve),
    Endpoint("DELETE", "/v1/customers/{id}/tax_ids/{tax_id}", {}, delete),
]
