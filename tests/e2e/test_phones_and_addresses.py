"""Phones in each country's local format and multi-line streets reach Stripe correctly; a phone that
is no number is left out with a note instead of holding up the Customer and its Orders."""

from __future__ import annotations

from .test_orders import Org, record, stripe_objects

# (Account fields, the E.164 number Stripe must hold): numbers as people type them in each country
LOCAL_PHONES = {
    "Berliner Bäckerei GmbH": ({"Phone": "030 1234567", "BillingCountry": "Germany"}, "+49301234567"),
    "Zürcher Uhren AG": ({"Phone": "044 668 18 00", "BillingCountry": "CH"}, "+41446681800"),
    "Bay Area Widgets Inc.": ({"Phone": "(415) 555-0132", "BillingCountry": "United States"}, "+14155550132"),
}


def customer_of(sandbox, account_id: str) -> dict:
    return next(
        c
        for c in stripe_objects(sandbox, "customer")
        if c["metadata"].get("salesforce_account_id") == account_id
    )


def test_local_phone_numbers_reach_stripe_in_e164_for_each_accounts_country(sandbox, run_sync):
    org = Org(sandbox)
    ids = {
        name: org.account(
            Name=name,
            BillingStreet="Hauptstr. 1\nHinterhaus",
            ShippingStreet="Lagerweg 9",
            ShippingCity="Potsdam",
            ShippingCountry="DE",
            **fields,
        )
        for name, (fields, _) in LOCAL_PHONES.items()
    }

    result = run_sync()

    for name, (_, e164) in LOCAL_PHONES.items():
        assert result.outcome(ids[name]).status == "created", result.outcome(ids[name]).message
        customer = customer_of(sandbox, ids[name])
        assert customer["phone"] == e164, name
        # shipping.phone is the same Account Phone: the same number, although shipping is in DE
        assert customer["shipping"]["phone"] == e164, name
        assert (customer["address"]["line1"], customer["address"]["line2"]) == ("Hauptstr. 1", "Hinterhaus")
        assert customer["shipping"]["address"]["line1"] == "Lagerweg 9"
        assert not customer["shipping"]["address"].get("line2")
        assert record(sandbox, "Account", ids[name])["Stripe_Sync_Message__c"] is None


def test_an_account_whose_phone_is_no_number_still_gets_its_customer_and_its_order_bills(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account(Phone="n/a", BillingCountry="DE")
    order_id, _ = org.order(account, [{"product": "Platform", "price": 49.0}])

    result = run_sync(("accounts", "orders"))

    assert result.outcome(account).status == "created"
    customer = customer_of(sandbox, account)
    assert not customer.get("phone")
    assert customer["name"] == "Globex Corporation"
    saved = record(sandbox, "Account", account)
    assert saved["Stripe_Customer_ID__c"] == customer["id"]
    assert saved["Stripe_Sync_Status__c"] == "Synced"
    message = saved["Stripe_Sync_Message__c"]
    assert message.startswith("Phone left out of phone: 'n/a' is not a phone number for DE"), message
    summary = "\n".join(line for r in result.reports for line in r.summary_lines())
    assert f"LEFT OUT {account} 'Globex Corporation': Phone left out of phone" in summary

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [sub] = stripe_objects(sandbox, "subscription")
    assert sub["customer"] == customer["id"]

    # once the phone is corrected the Customer gets it and the note is gone
    sandbox.sf_admin.patch_record("Account", account, {"Phone": "030 1234567"})
    run_sync()
    assert customer_of(sandbox, account)["phone"] == "+49301234567"
    assert record(sandbox, "Account", account)["Stripe_Sync_Message__c"] == "changed phone"
