"""A deterministic, realistic CPQ org to seed the fake org with.

`generate(accounts, orders, seed)` returns records in insertion order (parents before children),
each with a pre-made Id, field values as the REST API stores them. The data is meant to exercise
the connector, not to look tidy: account hierarchies, non-ASCII names, country names instead of
ISO codes, a few rows Stripe will refuse (unknown countries, malformed phones, invalid emails,
over-long descriptions), products of every CPQ charge type and billing frequency, a standard
price book, draft and activated orders in several currencies (JPY included), discounted lines,
decimal quantities and a few orders the connector must refuse (mixed billing frequencies, no lines).
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from connector.sandbox.salesforce.contracts import (
    FLAWS,
    ContractHistory,
    Flaw,
    Line,
    amend,
    create_contract,
    renew,
    terminate,
)
from connector.sandbox.salesforce.dates import add_months, contract_end
from connector.sandbox.salesforce.ids import make_id, restart_after
from connector.sandbox.salesforce.org import ADMIN_USER_ID, Org

Record = tuple[str, dict[str, Any]]

KEY_PREFIX = {
    "Account": "001",
    "Contact": "003",
    "Product2": "01t",
    "Pricebook2": "01s",
    "PricebookEntry": "01u",
    "Order": "801",
    "OrderItem": "802",
}
QUOTE_PREFIX = "a0x"  # SBQQ__Quote__c is a custom object; the Order field only holds its id

# Value of one USD in each currency; prices are converted and rounded per currency.
RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CAD": 1.36, "AUD": 1.52, "CHF": 0.88}
ZERO_DECIMAL = {"JPY"}
CURRENCIES = tuple(RATES)

INDUSTRIES = [
    "Agriculture", "Banking", "Education", "Electronics", "Energy", "Finance", "Healthcare",
    "Manufacturing", "Media", "Retail", "Technology", "Telecommunications", "Other",
]  # fmt: skip


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    currency: str
    phone: str  # format with {n} for digits
    cities: tuple[tuple[str, str | None, str], ...]  # city, state, postal code
    streets: tuple[str, ...]
    companies: tuple[str, ...]
    people: tuple[tuple[str, str], ...]


COUNTRIES: tuple[Country, ...] = (
    Country(
        "US", "United States", "USD", "+1 ({a}) 555-{b}",
        (("San Francisco", "CA", "94105"), ("New York", "NY", "10001"), ("Austin", "TX", "78701"),
         ("Chicago", "IL", "60601"), ("Seattle", "WA", "98101"), ("Boston", "MA", "02110")),
        ("{n} Market Street", "{n} Broadway", "{n} Congress Ave, Suite 400", "{n} Pine St"),
        ("Acme Analytics Inc.", "Blue Harbor Logistics LLC", "Summit Health Partners", "Northwind Traders",
         "Redwood Robotics Corp.", "Lakeside Credit Union", "Prairie Grain Co-op", "Orbital Media Group"),
        (("Emily", "Johnson"), ("Michael", "Smith"), ("Sarah", "Williams"), ("David", "Brown")),
    ),
    Country(
        "DE", "Germany", "EUR", "+49 30 {a}{b}",
        (("Berlin", "Berlin", "10115"), ("München", "Bayern", "80331"), ("Hamburg", "Hamburg", "20095"),
         ("Köln", "Nordrhein-Westfalen", "50667"), ("Düsseldorf", "Nordrhein-Westfalen", "40213")),
        ("Hauptstraße {n}", "Königsallee {n}", "Schloßstraße {n}", "Müllerstraße {n}"),
        ("Müller GmbH", "Schröder & Söhne KG", "Grünwald Technik AG", "Bäckerei Weiß GmbH",
         "Großhandel Köhler OHG", "Zahnärzte am Fluß", "Löwenbräu Digital GmbH"),
        (("Jürgen", "Müller"), ("Anna", "Schäfer"), ("Sören", "Groß"), ("Käthe", "Böhm")),
    ),
    Country(
        "FR", "France", "EUR", "+33 1 {a} {b}",
        (("Paris", None, "75008"), ("Lyon", None, "69002"), ("Marseille", None, "13001"),
         ("Bordeaux", None, "33000")),
        ("{n} rue de Rivoli", "{n} avenue des Champs-Élysées", "{n} boulevard Saint-Germain"),
        ("Société Générale des Logiciels", "Café Crème SARL", "Élan Numérique SAS", "Maison Lefèvre & Fils",
         "Énergies Renouvelables de l'Ouest", "Crédit Régional Coopératif"),
        (("Hélène", "Dupont"), ("François", "Lefèvre"), ("Amélie", "Moreau"), ("Jérôme", "Girard")),
    ),
    Country(
        "GB", "United Kingdom", "GBP", "+44 20 {a} {b}",
        (("London", None, "EC1A 1BB"), ("Manchester", None, "M1 1AE"), ("Edinburgh", "Scotland", "EH1 1YZ"),
         ("Bristol", None, "BS1 4DJ")),
        ("{n} Baker Street", "{n} King's Road", "Unit {n}, Riverside Park"),
        ("Thames Analytics Ltd", "Pennine Outdoor Supplies Ltd", "Highland Distillers plc",
         "St. Giles Publishing", "Brightwater Insurance Ltd"),
        (("Oliver", "Hughes"), ("Amelia", "O'Connor"), ("Harry", "Patel"), ("Isla", "McGregor")),
    ),
    Country(
        "JP", "Japan", "JPY", "+81 3-{a}-{b}",
        (("東京都千代田区", "東京都", "100-0005"), ("大阪市北区", "大阪府", "530-0001"),
         ("Yokohama", "Kanagawa", "220-0012"), ("京都市中京区", "京都府", "604-8005")),
        ("丸の内{n}丁目", "梅田{n}-1-1", "{n}-2-3 Minatomirai"),
        ("株式会社サクラテック", "山田商事株式会社", "富士ソリューションズ株式会社", "株式会社みらい電機",
         "Tanaka Precision Co., Ltd.", "合同会社ひかりデザイン"),
        (("太郎", "山田"), ("花子", "佐藤"), ("Kenji", "Watanabe"), ("由美", "鈴木")),
    ),
    Country(
        "CA", "Canada", "CAD", "+1 ({a}) 555-{b}",
        (("Toronto", "ON", "M5H 2N2"), ("Montréal", "QC", "H2Y 1C6"), ("Vancouver", "BC", "V6B 1A1")),
        ("{n} Bay Street", "{n} rue Sainte-Catherine", "{n} Granville St"),
        ("Maple Leaf Software Inc.", "Québec Énergie Ltée", "Pacific Timber Co."),
        (("Liam", "Tremblay"), ("Chloé", "Gagnon"), ("Noah", "Roy")),
    ),
    Country(
        "AU", "Australia", "AUD", "+61 2 {a} {b}",
        (("Sydney", "NSW", "2000"), ("Melbourne", "VIC", "3000"), ("Brisbane", "QLD", "4000")),
        ("{n} George Street", "Level {n}, 1 Collins St"),
        ("Outback Freight Pty Ltd", "Coral Reef Tours Pty Ltd", "Southern Cross Mining Ltd"),
        (("Jack", "Wilson"), ("Charlotte", "Taylor"), ("William", "Nguyen")),
    ),
    Country(
        "CH", "Switzerland", "CHF", "+41 44 {a} {b}",
        (("Zürich", "ZH", "8001"), ("Genève", "GE", "1204"), ("Basel", "BS", "4051")),
        ("Bahnhofstrasse {n}", "Rue du Rhône {n}"),
        ("Helvetia Präzision AG", "Banque Léman SA", "Alpenblick Uhren GmbH"),
        (("Lukas", "Meier"), ("Léa", "Favre"), ("Reto", "Brügger")),
    ),
    Country(
        "ES", "Spain", "EUR", "+34 91 {a} {b}",
        (("Madrid", "Madrid", "28013"), ("Barcelona", "Cataluña", "08002"),
         ("Sevilla", "Andalucía", "41004")),
        ("Calle de Alcalá {n}", "Passeig de Gràcia {n}"),
        ("Ñandú Soluciones S.L.", "Telefonía Ibérica S.A.", "Construcciones Peña y Muñoz"),
        (("José", "García"), ("María", "Núñez"), ("Iñigo", "Ibáñez")),
    ),
    Country(
        "SE", "Sweden", "EUR", "+46 8 {a} {b}",
        (("Stockholm", None, "111 52"), ("Göteborg", None, "411 06")),
        ("Drottninggatan {n}", "Kungsgatan {n}"),
        ("Åkesson & Öberg AB", "Nordljus Energi AB"),
        (("Åsa", "Lindström"), ("Björn", "Ekström")),
    ),
)  # fmt: skip

UNKNOWN_COUNTRIES = ("Atlantis", "Narnia", "Wakanda", "Elbonia")
LONG_DESCRIPTION = (
    "Key account since 2009. Procurement requires every invoice to reference the purchase order "
    "number and the cost centre, and invoices must be sent both to the accounts payable mailbox "
    "and to the regional controller. Renewal negotiations usually start ninety days before the "
    "end of term; the customer has asked for co-terming of all subscriptions across its European "
    "subsidiaries and for a single consolidated invoice per quarter. See the shared drive for the "
    "signed master services agreement, the data processing addendum and the security questionnaire. "
)


@dataclass(frozen=True)
class ProductSpec:
    name: str
    code: str
    family: str
    charge_type: str  # One-Time, Recurring, Usage
    billing_type: str | None  # Advance, Arrears
    frequency: str | None  # Monthly, Quarterly, Semiannual, Annual, Invoice Plan
    subscription_type: str  # Renewable, One-time, Evergreen
    term: int | None  # months
    usd_price: float

    @property
    def recurring(self) -> bool:
        return self.charge_type == "Recurring"


def _rec(name: str, code: str, family: str, freq: str, sub: str, price: float) -> ProductSpec:
    return ProductSpec(
        name, code, family, "Recurring", "Advance", freq, sub, None if sub == "Evergreen" else 12, price
    )


def _one(name: str, code: str, family: str, price: float) -> ProductSpec:
    return ProductSpec(name, code, family, "One-Time", None, None, "One-time", None, price)


def _usage(name: str, code: str, family: str, freq: str, price: float) -> ProductSpec:
    return ProductSpec(name, code, family, "Usage", "Arrears", freq, "Renewable", 12, price)


CATALOG: tuple[ProductSpec, ...] = (
    # Recurring, renewable (termed), one billing frequency each
    _rec("Platform Standard (Monthly)", "PLT-STD-M", "Software", "Monthly", "Renewable", 49.0),
    _rec("Platform Professional (Monthly)", "PLT-PRO-M", "Software", "Monthly", "Renewable", 99.0),
    _rec("Platform Enterprise (Monthly)", "PLT-ENT-M", "Software", "Monthly", "Renewable", 249.0),
    _rec("Analytics Add-on (Monthly)", "ANL-ADD-M", "Software", "Monthly", "Renewable", 19.5),
    _rec("Premium Support (Monthly)", "SUP-PRM-M", "Support", "Monthly", "Renewable", 150.0),
    _rec("Platform Standard (Quarterly)", "PLT-STD-Q", "Software", "Quarterly", "Renewable", 139.0),
    _rec("Platform Professional (Quarterly)", "PLT-PRO-Q", "Software", "Quarterly", "Renewable", 279.0),
    _rec("Analytics Add-on (Quarterly)", "ANL-ADD-Q", "Software", "Quarterly", "Renewable", 55.0),
    _rec("Premium Support (Quarterly)", "SUP-PRM-Q", "Support", "Quarterly", "Renewable", 420.0),
    _rec("Platform Professional (Semiannual)", "PLT-PRO-S", "Software", "Semiannual", "Renewable", 540.0),
    _rec("Data Residency (Semiannual)", "DAT-RES-S", "Software", "Semiannual", "Renewable", 300.0),
    _rec("Platform Standard (Annual)", "PLT-STD-A", "Software", "Annual", "Renewable", 490.0),
    _rec("Platform Professional (Annual)", "PLT-PRO-A", "Software", "Annual", "Renewable", 990.0),
    _rec("Platform Enterprise (Annual)", "PLT-ENT-A", "Software", "Annual", "Renewable", 2490.0),
    _rec("Analytics Add-on (Annual)", "ANL-ADD-A", "Software", "Annual", "Renewable", 199.0),
    _rec("Premium Support (Annual)", "SUP-PRM-A", "Support", "Annual", "Renewable", 1500.0),
    _rec("Hardware Lease – Edge Gateway (Annual)", "HW-GW-A", "Hardware", "Annual", "Renewable", 1200.0),
    # Recurring, evergreen (no term, no end date)
    _rec("Managed Hosting (Monthly)", "HOST-EVG-M", "Services", "Monthly", "Evergreen", 89.0),
    _rec("Backup Storage 1 TB (Monthly)", "BKP-EVG-M", "Services", "Monthly", "Evergreen", 25.0),
    _rec("Managed Hosting (Annual)", "HOST-EVG-A", "Services", "Annual", "Evergreen", 960.0),
    _rec("Compliance Monitoring (Quarterly)", "CMP-EVG-Q", "Services", "Quarterly", "Evergreen", 240.0),
    # Invoice plan (billed on a custom schedule)
    _rec("Implementation Retainer", "IMP-RET-IP", "Services", "Invoice Plan", "Renewable", 5000.0),
    # One-time
    _one("Onboarding & Setup Fee", "SETUP-STD", "Services", 500.0),
    _one("Data Migration", "SETUP-MIG", "Services", 1500.0),
    _one("Training Workshop (1 day)", "TRN-DAY", "Services", 1200.0),
    _one("Edge Gateway Device", "HW-GW-DEV", "Hardware", 349.99),
    # Usage, billed in arrears (metered)
    _usage("API Calls (per 1,000)", "USG-API", "Software", "Monthly", 0.5),
    _usage("SMS Messages", "USG-SMS", "Software", "Monthly", 0.0075),
    _usage("Storage Overage (per GB)", "USG-STO", "Services", "Monthly", 0.12),
    _usage("Compute Hours", "USG-CPU-Q", "Services", "Quarterly", 0.09),
)  # fmt: skip


def convert(usd: float, currency: str) -> float:
    """A list price in `currency`: rounded to whole units for zero-decimal currencies, to 4
    decimals for sub-cent usage prices, to cents otherwise."""
    amount = usd * RATES[currency]
    if currency in ZERO_DECIMAL:
        return float(max(1, round(amount)))
    if usd < 1:
        return round(amount, 4)
    return round(amount, 2)


class _Ids:
    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        n = self._next.get(prefix, 1)
        self._next[prefix] = n + 1
        return make_id(prefix, n)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _phone(rng: random.Random, country: Country) -> str:
    return country.phone.format(a=_digits(rng, 3), b=_digits(rng, 4))


def _slug(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name.lower().replace("ß", "ss"))
    ascii_part = "".join(ch for ch in folded if ch.isascii() and ch.isalnum())[:20]
    return ascii_part


def _address(rng: random.Random, country: Country, prefix: str, country_value: str) -> dict[str, Any]:
    city, state, postal = rng.choice(country.cities)
    return {
        f"{prefix}Street": rng.choice(country.streets).format(n=rng.randint(1, 250)),
        f"{prefix}City": city,
        f"{prefix}State": state,
        f"{prefix}PostalCode": postal,
        f"{prefix}Country": country_value,
    }


def _accounts(rng: random.Random, ids: _Ids, count: int) -> tuple[list[Record], list[Record]]:
    """Accounts (parents before children) and one Contact for most of them."""
    accounts: list[Record] = []
    contacts: list[Record] = []
    used_names: dict[str, int] = {}
    for i in range(count):
        parent = None
        parents = [a for a in accounts[-50:] if a[1]["ParentId"] is None]
        if accounts and rng.random() < 0.15 and parents:
            parent = rng.choice(parents)[1]
        country = rng.choice(COUNTRIES) if parent is None else _country_of(parent)
        if parent is not None:
            city = rng.choice(country.cities)[0]
            base = f"{parent['Name']} – {city}"
        else:
            base = rng.choice(country.companies)
        used_names[base] = used_names.get(base, 0) + 1
        name = base if used_names[base] == 1 else f"{base} ({used_names[base]})"
        domain = f"{_slug(base) or 'kaisha'}{i}.example.com"

        if parent is not None:
            currency = parent["CurrencyIsoCode"]
        else:
            currency = country.currency if rng.random() < 0.85 else "USD"
        country_value = country.code if rng.random() < 0.75 else country.name
        record: dict[str, Any] = {
            "Id": ids(KEY_PREFIX["Account"]),
            "Name": name,
            "ParentId": parent["Id"] if parent else None,
            "Phone": _phone(rng, country),
            "Website": f"https://www.{domain}",
            "Industry": rng.choice(INDUSTRIES),
            "Description": None,
            **_address(rng, country, "Billing", country_value),
            "CurrencyIsoCode": currency,
            "Billing_Email__c": f"billing@{domain}" if rng.random() < 0.95 else f"ap+{i}@{domain}",
            "Billing_Entity__c": parent is None or rng.random() < 0.2,
        }
        if rng.random() < 0.7:
            record.update(
                {
                    k.replace("Billing", "Shipping", 1): v
                    for k, v in record.items()
                    if k.startswith("Billing") and k not in ("Billing_Email__c", "Billing_Entity__c")
                }
            )
        else:
            record.update(_address(rng, country, "Shipping", country_value))
        if rng.random() < 0.2:
            record["Description"] = (
                f"{rng.choice(['Enterprise', 'Mid-market', 'SMB'])} customer, {country.name}."
            )
        if rng.random() < 0.06:
            _spoil(rng, record)
        accounts.append(("Account", record))

        if rng.random() < 0.6:
            first, last = rng.choice(country.people)
            contacts.append(("Contact", {
                "Id": ids(KEY_PREFIX["Contact"]),
                "AccountId": record["Id"],
                "FirstName": first,
                "LastName": last,
                "Email": f"{_slug(first + last) or 'tantou'}@{domain}",
                "Phone": _phone(rng, country),
            }))  # fmt: skip
    return accounts, contacts


def _country_of(account: dict[str, Any]) -> Country:
    value = account.get("BillingCountry")
    for country in COUNTRIES:
        if value in (country.code, country.name):
            return country
    return COUNTRIES[0]


def _spoil(rng: random.Random, record: dict[str, Any]) -> None:
    """Make an account that Salesforce accepts but Stripe (or the connector's checks) will not:
    an unknown country, a phone that is no number, a description over Stripe's 350 characters, a
    malformed or missing billing email, or no billing address at all."""
    kind = rng.choice(["country", "phone", "description", "email", "no_email", "no_address"])
    if kind == "country":
        record["BillingCountry"] = rng.choice(UNKNOWN_COUNTRIES)
    elif kind == "phone":
        record["Phone"] = rng.choice(["call me", "ask for Jürgen", "n/a"])
    elif kind == "description":
        record["Description"] = (LONG_DESCRIPTION * 2).strip()
    elif kind == "email":
        # Salesforce itself rejects "not-an-email" (INVALID_EMAIL_ADDRESS), so the bad addresses
        # here are ones its validator lets through but RFC 5322 (and Stripe) do not.
        local, _, domain = str(record["Billing_Email__c"] or "billing@example.com").partition("@")
        record["Billing_Email__c"] = rng.choice(
            [f".{local}@{domain}", f"{local}..ap@{domain}", f"{local}.@{domain}"]
        )
    elif kind == "no_email":
        record["Billing_Email__c"] = None
    else:
        for part in ("Street", "City", "State", "PostalCode", "Country"):
            record[f"Billing{part}"] = None


def _catalog(
    ids: _Ids,
) -> tuple[list[Record], dict[tuple[str, str], dict[str, Any]], dict[str, dict[str, Any]]]:
    """The standard price book, the products and one entry per product per currency."""
    records: list[Record] = []
    pricebook: dict[str, Any] = {
        "Id": ids(KEY_PREFIX["Pricebook2"]),
        "Name": "Standard Price Book",
        "IsActive": True,
        "IsStandard": True,
        "Description": "Standard price book",
    }
    records.append(("Pricebook2", pricebook))
    products: dict[str, dict[str, Any]] = {}
    for spec in CATALOG:
        product = {
            "Id": ids(KEY_PREFIX["Product2"]),
            "Name": spec.name,
            "ProductCode": spec.code,
            "Description": f"{spec.name} — {spec.charge_type.lower()} charge",
            "Family": spec.family,
            "IsActive": True,
            "SBQQ__ChargeType__c": spec.charge_type,
            "SBQQ__BillingType__c": spec.billing_type,
            "SBQQ__BillingFrequency__c": spec.frequency,
            "SBQQ__SubscriptionType__c": spec.subscription_type,
            "SBQQ__SubscriptionTerm__c": float(spec.term) if spec.term else None,
        }
        products[spec.code] = product
        records.append(("Product2", product))
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in CATALOG:
        for currency in CURRENCIES:
            entry = {
                "Id": ids(KEY_PREFIX["PricebookEntry"]),
                "Pricebook2Id": pricebook["Id"],
                "Product2Id": products[spec.code]["Id"],
                "UnitPrice": convert(spec.usd_price, currency),
                "CurrencyIsoCode": currency,
                "IsActive": True,
                "UseStandardPrice": False,
            }
            entries[(spec.code, currency)] = entry
            records.append(("PricebookEntry", entry))
    return records, entries, pricebook


SPECS = {spec.code: spec for spec in CATALOG}


def _pick(rng: random.Random, **match: Any) -> ProductSpec:
    candidates = [s for s in CATALOG if all(getattr(s, k) == v for k, v in match.items())]
    return rng.choice(candidates)


def _order_lines(rng: random.Random, kind: str) -> tuple[list[ProductSpec], bool]:
    """The products of one order and whether it is termed (has an end date)."""
    if kind == "no_lines":
        return [], True
    if kind == "invoice_plan":
        return [SPECS["IMP-RET-IP"], _pick(rng, charge_type="One-Time")], True
    evergreen = kind == "normal" and rng.random() < 0.15
    sub_type = "Evergreen" if evergreen else "Renewable"
    frequencies = sorted({s.frequency for s in CATALOG if s.recurring and s.subscription_type == sub_type
                          and s.frequency is not None and s.frequency != "Invoice Plan"})  # fmt: skip
    frequency = rng.choice(frequencies)
    pool = [
        s for s in CATALOG if s.recurring and s.subscription_type == sub_type and s.frequency == frequency
    ]
    lines = rng.sample(pool, k=min(len(pool), rng.randint(1, 3)))
    if rng.random() < 0.4:
        lines.append(_pick(rng, charge_type="One-Time"))
    usage = [s for s in CATALOG if s.charge_type == "Usage" and s.frequency == frequency]
    if usage and not evergreen and rng.random() < 0.35:
        lines.append(rng.choice(usage))
    if kind == "mixed_frequencies":
        others = [s for s in CATALOG if s.recurring and s.subscription_type == "Renewable"
                  and s.frequency not in (frequency, "Invoice Plan")]  # fmt: skip
        lines.append(rng.choice(others))
    return lines[:5], not evergreen


def _orders(
    rng: random.Random,
    ids: _Ids,
    count: int,
    accounts: list[Record],
    entries: dict[tuple[str, str], dict[str, Any]],
    pricebook: dict[str, Any],
    today: date,
) -> list[Record]:
    if count and not accounts:
        raise ValueError("orders need at least one account")
    billing = [a for _, a in accounts if a["Billing_Entity__c"]] or [a for _, a in accounts]
    others = [a for _, a in accounts if not a["Billing_Entity__c"]]
    records: list[Record] = []
    for i in range(count):
        account = rng.choice(others) if others and rng.random() < 0.05 else rng.choice(billing)
        currency = account["CurrencyIsoCode"]
        roll = rng.random()
        kind = (
            "no_lines" if roll < 0.02
            else "mixed_frequencies" if roll < 0.05
            else "invoice_plan" if roll < 0.07
            else "normal"
        )  # fmt: skip
        specs, termed = _order_lines(rng, kind)
        when = rng.random()
        if when < 0.6:
            start = today - timedelta(days=rng.randint(1, 400))
        elif when < 0.75:
            start = today
        else:
            start = today + timedelta(days=rng.randint(1, 90))
        end = contract_end(start, 12) if termed else None
        order = {
            "Id": ids(KEY_PREFIX["Order"]),
            "AccountId": account["Id"],
            "Pricebook2Id": pricebook["Id"],
            "Status": "Activated" if rng.random() < 0.7 else "Draft",
            "EffectiveDate": start.isoformat(),
            "EndDate": end.isoformat() if end else None,
            "CurrencyIsoCode": currency,
            "Type": "New" if rng.random() < 0.8 else "Renewal",
            "Description": None,
            "SBQQ__Quote__c": make_id(QUOTE_PREFIX, i + 1),
            "Payment_Term__c": rng.choices(
                ["Net 30", "Net 15", "Net 45", "Net 60", "Due on Receipt", None], weights=[70, 8, 6, 6, 6, 4]
            )[0],
        }
        if kind != "normal":
            order["Description"] = f"Sandbox seed: {kind.replace('_', ' ')}"
        records.append(("Order", order))
        decimal_quantity = rng.random() < 0.03
        for spec in specs:
            entry = entries[(spec.code, currency)]
            if spec.charge_type == "Usage" or spec.charge_type == "One-Time":
                quantity = 1.0 if spec.code != "TRN-DAY" else float(rng.randint(1, 3))
            else:
                quantity = float(rng.choice([1, 1, 1, 2, 3, 5, 10, 25, 50]))
            if decimal_quantity and spec.recurring:
                quantity, decimal_quantity = 2.5, False
            price = entry["UnitPrice"]
            if rng.random() < 0.15 and spec.charge_type != "Usage":
                factor = rng.choice([0.9, 0.85, 0.8, 0.75])
                price = float(round(price * factor)) if currency in ZERO_DECIMAL else round(price * factor, 2)
            records.append(("OrderItem", {
                "Id": ids(KEY_PREFIX["OrderItem"]),
                "OrderId": order["Id"],
                "Product2Id": entry["Product2Id"],
                "PricebookEntryId": entry["Id"],
                "Quantity": quantity,
                "UnitPrice": price,
                "ServiceDate": order["EffectiveDate"],
                "EndDate": order["EndDate"] if spec.charge_type != "One-Time" else None,
                "Description": spec.name[:255],
                "SBQQ__ChargeType__c": spec.charge_type,
                "SBQQ__BillingType__c": spec.billing_type,
                "SBQQ__BillingFrequency__c": spec.frequency,
                "SBQQ__SubscriptionTerm__c": float(spec.term) if spec.term else None,
                "SBQQ__SubscriptionType__c": spec.subscription_type,
            }))  # fmt: skip
    return records


def generate(accounts: int, orders: int, seed: int, today: date | None = None) -> list[Record]:
    """Exactly `accounts` Accounts and `orders` Orders (plus the catalog, contacts and order
    lines), the same for the same arguments. `today` anchors order dates (default: today)."""
    if accounts < 0 or orders < 0:
        raise ValueError("counts must not be negative")
    rng = random.Random(seed)
    ids = _Ids()
    catalog, entries, pricebook = _catalog(ids)
    account_records, contact_records = _accounts(rng, ids, accounts)
    order_records = _orders(rng, ids, orders, account_records, entries, pricebook, today or date.today())
    return [*catalog, *account_records, *contact_records, *order_records]


def counts(records: list[Record]) -> dict[str, int]:
    """Records per object, in first-seen order."""
    out: dict[str, int] = {}
    for obj, _ in records:
        out[obj] = out.get(obj, 0) + 1
    return out


# -------------------------------------------------------------------------------- contract histories


def _contract_account(org: Org, rng: random.Random, index: int, currency: str | None) -> str:
    country = rng.choice(COUNTRIES)
    name = f"{rng.choice(country.companies)} (contract {index + 1})"
    domain = f"{_slug(name) or 'kaisha'}{index}.example.com"
    values: dict[str, Any] = {
        "Name": name,
        "Billing_Email__c": f"billing@{domain}",
        "Billing_Entity__c": True,
        "BillingCity": country.cities[0][0],
        "BillingCountry": country.code,
    }
    if currency is not None:
        values["CurrencyIsoCode"] = currency
    return org.insert("Account", values, ADMIN_USER_ID)


def _price(spec: ProductSpec, currency: str | None, factor: float = 1.0) -> float:
    amount = convert(spec.usd_price, currency or "USD") * factor
    return float(round(amount)) if (currency or "USD") in ZERO_DECIMAL else round(amount, 2)


def _contract_lines(
    rng: random.Random, currency: str | None, evergreen: bool, frequency: str | None = None
) -> list[Line]:
    sub_type = "Evergreen" if evergreen else "Renewable"
    pool = [
        s
        for s in CATALOG
        if s.recurring and s.subscription_type == sub_type and s.frequency != "Invoice Plan"
    ]
    frequency = frequency or rng.choice(
        sorted({s.frequency for s in pool if s.frequency in ("Monthly", "Annual")})
    )
    pool = [s for s in pool if s.frequency == frequency]
    chosen = rng.sample(pool, k=min(len(pool), rng.randint(1, 3)))
    return [
        Line(s.name, float(rng.choice([1, 2, 5, 10, 20])), _price(s, currency), str(s.frequency))
        for s in chosen
    ]


def _amendment_dates(rng: random.Random, start: date, last: date, count: int) -> list[date]:
    """`count` distinct days after `start` and on or before `last`, in order."""
    span = (last - start).days
    if span < 1:
        return []
    return sorted(start + timedelta(days=d) for d in rng.sample(range(1, span + 1), k=min(count, span)))


def _random_amendment(
    org: Org, rng: random.Random, history: ContractHistory, effective: date, currency: str | None
) -> None:
    """One ordinary amendment: seats up or down, a new product, or a price change."""
    in_force = history.quantities_on(effective)
    frequency = next(iter(in_force.values())).frequency if in_force else "Monthly"
    kind = rng.choice(["up", "up", "down", "add", "price"])
    product = rng.choice(sorted(in_force)) if in_force else None
    if kind == "down" and product is not None and in_force[product].quantity > 1:
        amend(org, history, effective, {product: -min(3.0, in_force[product].quantity - 1)})
    elif kind == "price" and product is not None:
        amend(org, history, effective, prices={product: round(in_force[product].unit_price * 1.1, 2)})
    elif kind == "add":
        sub_type = "Evergreen" if history.evergreen else "Renewable"
        extra = [s for s in CATALOG if s.recurring and s.subscription_type == sub_type
                 and s.frequency == frequency and s.name not in history.originals]  # fmt: skip
        if extra:
            spec = rng.choice(extra)
            new = Line(spec.name, float(rng.randint(1, 5)), _price(spec, currency), frequency)
            amend(org, history, effective, add=[new])
        elif product is not None:
            amend(org, history, effective, {product: float(rng.randint(1, 10))})
    elif product is not None:
        amend(org, history, effective, {product: float(rng.randint(1, 10))})


def _flawed_history(
    org: Org, rng: random.Random, flaw: Flaw, account: str, start: date, currency: str | None,
    others: list[ContractHistory],
) -> ContractHistory:  # fmt: skip
    """A contract whose history has exactly the flaw `flaw` (as ContractHistory.flaws names it)."""
    lines = _contract_lines(rng, currency, evergreen=False, frequency="Monthly")
    history = create_contract(
        org, account, start, lines, currency=currency,
        status="Draft" if flaw == "original_not_activated" else "Activated",
    )  # fmt: skip
    assert history.end is not None
    effective = start + timedelta(days=rng.randint(30, 300))
    product = lines[0].product
    if flaw == "not_coterminous":
        amend(org, history, effective, {product: 2.0}, end=add_months(history.end, -1))
    elif flaw == "currency_change":
        other = next(c for c in ("EUR", "GBP", "USD") if c != currency)
        amend(org, history, effective, {product: 2.0}, currency=other)
    elif flaw == "interval_change":
        spec = rng.choice([s for s in CATALOG if s.recurring and s.subscription_type == "Renewable"
                           and s.frequency in ("Quarterly", "Annual")])  # fmt: skip
        amend(
            org, history, effective, add=[Line(spec.name, 1.0, _price(spec, currency), str(spec.frequency))]
        )
    elif flaw == "overlapping_renewal":
        renew(org, history)
        renew(org, history, prices={product: round(lines[0].unit_price * 1.2, 2)})
    elif flaw == "unknown_revised_line":
        monthly = [h for h in others if h.first_order.lines[0].frequency == "Monthly"]
        foreign = monthly[-1] if monthly else create_contract(org, account, start, lines, currency=currency)
        amend(org, history, effective, {foreign.first_order.lines[0].id: 2.0})
    else:  # original_not_activated
        amend(org, history, effective, {product: 2.0})
    return history


def seed_contracts(
    org: Org, contracts: int, seed: int, today: date | None = None, *, flawed_share: float = 0.2
) -> list[ContractHistory]:
    """`contracts` contract histories in `org`, the same shapes (dates, products, quantities,
    prices, flaws; not ids) for the same arguments. Each has its own billing Account and a first
    Order with 1-3 monthly or annual lines; about 15% are evergreen. Termed contracts get 0-3
    amendments (seats up/down, a new product, a price change) on days before, around and after
    `today`, then a renewal (40%), a termination (20%) or nothing; evergreen ones 0-2 amendments
    and a cancellation half the time. About `flawed_share` of them carry one flaw each, every flaw
    in turn (FLAWS), named in the history's `flaws`. Not part of `generate`: the default seed has
    no contracts."""
    if contracts < 0:
        raise ValueError("contracts must not be negative")
    rng = random.Random(seed)
    today = today or date.today()
    multi = "CurrencyIsoCode" in org.schema.objects["Order"].fields
    flaws = [f for f in FLAWS if multi or f != "currency_change"]
    flawed = set(rng.sample(range(contracts), k=min(contracts, round(contracts * flawed_share))))
    histories: list[ContractHistory] = []
    for i in range(contracts):
        currency = rng.choice(["USD", "USD", "EUR", "GBP"]) if multi else None
        account = _contract_account(org, rng, i, currency)
        start = today + timedelta(days=rng.randint(-500, 60))
        if i in flawed:
            flaw = flaws[sum(1 for j in flawed if j < i) % len(flaws)]
            histories.append(_flawed_history(org, rng, flaw, account, start, currency, histories))
            continue
        evergreen = rng.random() < 0.15
        term = None if evergreen else rng.choice([12, 12, 12, 24])
        history = create_contract(
            org,
            account,
            start,
            _contract_lines(rng, currency, evergreen),
            term_months=term,
            currency=currency,
        )
        last = history.end or start + timedelta(days=400)
        for effective in _amendment_dates(rng, start, last, rng.randint(0, 2 if evergreen else 3)):
            _random_amendment(org, rng, history, effective, currency)
        roll = rng.random()
        after = max([o.effective for o in history.orders]) + timedelta(days=1)
        if evergreen and roll < 0.5 and after <= last:
            terminate(org, history, after + timedelta(days=rng.randint(0, 60)))
        elif not evergreen and roll < 0.4:
            in_force = history.quantities_on(last).items()
            renew(
                org,
                history,
                prices={p: round(x.unit_price * 1.05, 2) for p, x in in_force if rng.random() < 0.5},
            )
        elif not evergreen and roll < 0.6 and after <= last:
            terminate(org, history, after + timedelta(days=rng.randint(0, (last - after).days)))
        histories.append(history)
    return histories


@dataclass
class Seeded:
    """What `populate` put in an org: records per object, and the contract histories."""

    loaded: int
    counts: dict[str, int]
    contracts: list[ContractHistory]


def populate(
    org: Org, accounts: int, orders: int, seed: int, *, contracts: int = 0, today: date | None = None
) -> Seeded:
    """The generated org (`generate`) loaded into `org`, then `contracts` contract histories
    (`seed_contracts`): the one seeding routine behind the admin API and `cpq2stripe sandbox`.
    A single-currency org gets no CurrencyIsoCode values."""
    records = generate(accounts, orders, seed)
    if "CurrencyIsoCode" not in org.schema.objects["Order"].fields:
        records = [
            (name, {k: v for k, v in values.items() if k != "CurrencyIsoCode"}) for name, values in records
        ]
    loaded = org.load(records)
    totals = counts(records)
    if contracts:  # the same org and seed: the same contract ids
        restart_after(r["Id"] for name in org.schema.objects for r in org.records(name))
    histories = seed_contracts(org, contracts, seed, today)
    if histories:  # contract histories are written through the org: count what is there now
        for name in ("Account", "Contract", "Opportunity", "Order", "OrderItem", "PricebookEntry"):
            totals[name] = org.count(name)
    return Seeded(loaded, totals, histories)
