"""Customer tax ids from an Account's fields: the Stripe `type` inferred from the value and the
billing country, the value checked against the format Stripe validates, and put in the one form
Stripe stores (so that comparing what Salesforce says with what the Customer has is exact).

Formats and examples are Stripe's "Customer tax IDs" table (docs.stripe.com/billing/customer/tax-ids)
and the EU's VIES number formats. Types the connector cannot infer (anything but the countries
below) need an explicit type from the mapping's `type_source`; Stripe then validates the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Stripe's tax id types (the `type` enum of POST /v1/customers/{id}/tax_ids, stripe-python 16).
_TYPES_TEXT = """ad_nrt ae_trn al_tin am_tin
    ao_tin ar_cuit au_abn au_acn au_arn au_wpn aw_tin az_tin ba_tin bb_tin
    bd_bin bf_ifu bg_uic bh_vat bj_ifu bo_tin br_cnpj br_cpf bs_tin bw_vat by_tin ca_bn ca_gst_hst ca_pst_bc
    ca_pst_mb ca_pst_sk ca_qst cd_nif ch_uid ch_vat ci_vat cl_tin cm_niu cn_tin co_nit cr_tin cv_nif cz_dic
    de_stn do_rcn ec_ruc eg_tin es_cif et_tin eu_oss_vat eu_vat fo_vat fr_siren fr_siret fr_spi gb_vat
    ge_vat gh_tin gi_tin gn_nif hk_br hr_oib hu_tin ic_nif id_npwp il_vat in_gst is_kt is_vat it_cf jp_cn
    jp_rn jp_trn ke_pin kg_tin kh_tin kr_brn kz_bin la_tin li_uid li_vat lk_vat ma_vat md_cf md_vat me_pib
    mk_vat mr_nif mu_vat mx_rfc my_frp my_itn my_sst mz_nuit ng_tin no_vat no_voec np_pan nz_bn nz_gst
    om_vat pe_ruc ph_tin pl_nip pt_nif py_ruc ro_tin rs_pib ru_inn ru_kpp sa_vat sg_gst sg_uen si_tin
    sm_coe sn_ninea sr_fin sv_nit th_vat tj_tin tr_tin tt_bir tt_vat tw_vat tz_vat ua_vat ug_tin us_ein
    uy_ruc uz_tin uz_vat ve_rif vn_tin za_vat zm_tin zw_tin"""
STRIPE_TAX_ID_TYPES = frozenset(_TYPES_TEXT.split())

# EU VAT numbers: the part after the country prefix (VIES formats), and Stripe's example.
_EU_VAT: dict[str, tuple[str, str]] = {
    "AT": (r"U\d{8}", "ATU12345678"),
    "BE": (r"[01]\d{9}", "BE0123456789"),
    "BG": (r"\d{9,10}", "BG0123456789"),
    "CY": (r"\d{8}[A-Z]", "CY12345678Z"),
    "CZ": (r"\d{8,10}", "CZ1234567890"),
    "DE": (r"\d{9}", "DE123456789"),
    "DK": (r"\d{8}", "DK12345678"),
    "EE": (r"\d{9}", "EE123456789"),
    "EL": (r"\d{9}", "EL123456789"),
    "ES": (r"[A-Z0-9]\d{7}[A-Z0-9]", "ESA1234567Z"),
    "FI": (r"\d{8}", "FI12345678"),
    "FR": (r"[A-HJ-NP-Z0-9]{2}\d{9}", "FRAB123456789"),
    "HR": (r"\d{11}", "HR12345678912"),
    "HU": (r"\d{8}|\d{11}", "HU12345678"),
    "IE": (r"\d{7}[A-W][A-I]?|\d[A-Z+*]\d{5}[A-W]", "IE1234567AB"),
    "IT": (r"\d{11}", "IT12345678912"),
    "LT": (r"\d{9}|\d{12}", "LT123456789123"),
    "LU": (r"\d{8}", "LU12345678"),
    "LV": (r"\d{11}", "LV12345678912"),
    "MT": (r"\d{8}", "MT12345678"),
    "NL": (r"\d{9}B\d{2}", "NL123456789B12"),
    "PL": (r"\d{10}", "PL1234567890"),
    "PT": (r"\d{9}", "PT123456789"),
    "RO": (r"\d{2,10}", "RO1234567891"),
    "SE": (r"\d{12}", "SE123456789123"),
    "SI": (r"\d{8}", "SI12345678"),
    "SK": (r"\d{10}", "SK1234567891"),
    "XI": (r"\d{9}|\d{12}", "XI123456789"),  # Northern Ireland traders: eu_vat
}
_EU_PREFIX_OF_COUNTRY = {**{c: c for c in _EU_VAT if c not in ("EL", "XI")}, "GR": "EL"}


@dataclass(frozen=True)
class _Format:
    type: str
    pattern: re.Pattern[str]
    example: str
    prefix: str = ""  # added when the value lacks it
    suffix: str = ""


_NATIONAL: dict[str, _Format] = {
    "GB": _Format("gb_vat", re.compile(r"GB(\d{9}|\d{12}|GD\d{3}|HA\d{3})"), "GB123456789", prefix="GB"),
    "NO": _Format("no_vat", re.compile(r"\d{9}MVA"), "123456789MVA", suffix="MVA"),
    "AU": _Format("au_abn", re.compile(r"\d{11}"), "12345678912"),
    "CH": _Format("ch_vat", re.compile(r"CHE-\d{3}\.\d{3}\.\d{3} (MWST|TVA|IVA)"), "CHE-123.456.789 MWST"),
}
SUPPORTED_COUNTRIES = tuple(sorted({*_EU_PREFIX_OF_COUNTRY, "XI", *_NATIONAL}))


@dataclass(frozen=True)
class TaxIdValue:
    type: str
    value: str

    def params(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


class TaxIdProblem(ValueError):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def _compact(text: str) -> str:
    return re.sub(r"[\s.\-/]", "", text).upper()


def _eu(compact: str, country: str | None, raw: str) -> TaxIdValue:
    prefix = compact[:2]
    if prefix not in _EU_VAT:
        prefix = _EU_PREFIX_OF_COUNTRY.get(country or "", "")
        compact = prefix + compact
    pattern, example = _EU_VAT[prefix]
    if not re.fullmatch(pattern, compact[2:]):
        raise TaxIdProblem(
            f"'{raw}' is not a valid {prefix} VAT number (Stripe type eu_vat)",
            f"write it as in the VIES register, e.g. {example}",
        )
    return TaxIdValue("eu_vat", compact)


def _swiss(raw: str) -> TaxIdValue:
    fmt = _NATIONAL["CH"]
    match = re.fullmatch(r"CHE(\d{3})(\d{3})(\d{3})(MWST|TVA|IVA)?", _compact(raw))
    if match is None:
        raise TaxIdProblem(f"'{raw}' is not a valid Swiss VAT number (ch_vat)", f"write it as {fmt.example}")
    a, b, c, suffix = match.groups()
    return TaxIdValue("ch_vat", f"CHE-{a}.{b}.{c} {suffix or 'MWST'}")


def infer_tax_id(raw: str, country: str | None, explicit_type: str | None = None) -> TaxIdValue:
    """The Stripe tax id for a value in an Account whose billing country is `country` (ISO code).

    An explicit type (from the mapping's `type_source`) wins and is sent as written (Stripe checks
    it); otherwise the type follows from the value's EU prefix or the country. Raises TaxIdProblem."""
    text = raw.strip()
    country = (country or "").upper() or None
    if explicit_type:
        kind = explicit_type.strip().lower()
        if kind not in STRIPE_TAX_ID_TYPES:
            raise TaxIdProblem(
                f"'{explicit_type}' is not a Stripe tax ID type",
                "use a type from Stripe's list, e.g. eu_vat, gb_vat, ch_vat, au_abn, us_ein",
            )
        if kind == "eu_vat":
            return _eu(_compact(text), country, raw)
        national = next((f for f in _NATIONAL.values() if f.type == kind), None)
        if national is None:
            return TaxIdValue(kind, text)
        country = next(c for c, f in _NATIONAL.items() if f is national)
    compact = _compact(text)
    if compact[:2] in _EU_VAT and (country in _EU_PREFIX_OF_COUNTRY or country in (None, "XI")):
        return _eu(compact, country, raw)
    if country in _EU_PREFIX_OF_COUNTRY:
        return _eu(compact, country, raw)
    if country == "CH":
        return _swiss(raw)
    fmt = _NATIONAL.get(country or "")
    if fmt is None:
        where = f"billing country {country}" if country else "no billing country"
        raise TaxIdProblem(
            f"cannot tell the Stripe tax ID type of '{raw}' for an Account with {where}",
            "set the Account's billing country (the connector infers EU, GB, CH, NO and AU numbers), "
            "or map tax_ids[].type_source to a field holding the Stripe type (e.g. us_ein)",
        )
    if fmt.prefix and not compact.startswith(fmt.prefix):
        compact = fmt.prefix + compact
    if fmt.suffix and not compact.endswith(fmt.suffix):
        compact = compact + fmt.suffix
    if country == "NO" and compact.startswith("NO"):
        compact = compact[2:]
    if not fmt.pattern.fullmatch(compact):
        raise TaxIdProblem(
            f"'{raw}' is not a valid {country} tax ID (Stripe type {fmt.type})",
            f"write it as Stripe expects, e.g. {fmt.example}",
        )
    return TaxIdValue(fmt.type, compact)
