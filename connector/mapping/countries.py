"""ISO 3166-1 country table and the lookup behind the `country` transform.

Hand-written so the mapping package needs no data dependency. Each line of `_TABLE` is
`alpha-2|alpha-3|English short name`; `_ALIASES` adds the spellings people really type into
Salesforce (native names, old names, abbreviations). Lookup ignores case, accents, dots,
apostrophes, hyphens and a leading "the", so "U.S.A.", "usa" and "The Netherlands" all resolve.
"""

from __future__ import annotations

import re
import unicodedata

_TABLE = """
AD|AND|Andorra
AE|ARE|United Arab Emirates
AF|AFG|Afghanistan
AG|ATG|Antigua and Barbuda
AI|AIA|Anguilla
AL|ALB|Albania
AM|ARM|Armenia
AO|AGO|Angola
AQ|ATA|Antarctica
AR|ARG|Argentina
AS|ASM|American Samoa
AT|AUT|Austria
AU|AUS|Australia
AW|ABW|Aruba
AX|ALA|Aland Islands
AZ|AZE|Azerbaijan
BA|BIH|Bosnia and Herzegovina
BB|BRB|Barbados
BD|BGD|Bangladesh
BE|BEL|Belgium
BF|BFA|Burkina Faso
BG|BGR|Bulgaria
BH|BHR|Bahrain
BI|BDI|Burundi
BJ|BEN|Benin
BL|BLM|Saint Barthelemy
BM|BMU|Bermuda
BN|BRN|Brunei Darussalam
BO|BOL|Bolivia, Plurinational State of
BQ|BES|Bonaire, Sint Eustatius and Saba
BR|BRA|Brazil
BS|BHS|Bahamas
BT|BTN|Bhutan
BV|BVT|Bouvet Island
BW|BWA|Botswana
BY|BLR|Belarus
BZ|BLZ|Belize
CA|CAN|Canada
CC|CCK|Cocos (Keeling) Islands
CD|COD|Congo, Democratic Republic of the
CF|CAF|Central African Republic
CG|COG|Congo
CH|CHE|Switzerland
CI|CIV|Cote d'Ivoire
CK|COK|Cook Islands
CL|CHL|Chile
CM|CMR|Cameroon
CN|CHN|China
CO|COL|Colombia
CR|CRI|Costa Rica
CU|CUB|Cuba
CV|CPV|Cabo Verde
CW|CUW|Curacao
CX|CXR|Christmas Island
CY|CYP|Cyprus
CZ|CZE|Czechia
DE|DEU|Germany
DJ|DJI|Djibouti
DK|DNK|Denmark
DM|DMA|Dominica
DO|DOM|Dominican Republic
DZ|DZA|Algeria
EC|ECU|Ecuador
EE|EST|Estonia
EG|EGY|Egypt
EH|ESH|Western Sahara
ER|ERI|Eritrea
ES|ESP|Spain
ET|ETH|Ethiopia
FI|FIN|Finland
FJ|FJI|Fiji
FK|FLK|Falkland Islands (Malvinas)
FM|FSM|Micronesia, Federated States of
FO|FRO|Faroe Islands
FR|FRA|France
GA|GAB|Gabon
GB|GBR|United Kingdom
GD|GRD|Grenada
GE|GEO|Georgia
GF|GUF|French Guiana
GG|GGY|Guernsey
GH|GHA|Ghana
GI|GIB|Gibraltar
GL|GRL|Greenland
GM|GMB|Gambia
GN|GIN|Guinea
GP|GLP|Guadeloupe
GQ|GNQ|Equatorial Guinea
GR|GRC|Greece
GS|SGS|South Georgia and the South Sandwich Islands
GT|GTM|Guatemala
GU|GUM|Guam
GW|GNB|Guinea-Bissau
GY|GUY|Guyana
HK|HKG|Hong Kong
HM|HMD|Heard Island and McDonald Islands
HN|HND|Honduras
HR|HRV|Croatia
HT|HTI|Haiti
HU|HUN|Hungary
ID|IDN|Indonesia
IE|IRL|Ireland
IL|ISR|Israel
IM|IMN|Isle of Man
IN|IND|India
IO|IOT|British Indian Ocean Territory
IQ|IRQ|Iraq
IR|IRN|Iran, Islamic Republic of
IS|ISL|Iceland
IT|ITA|Italy
JE|JEY|Jersey
JM|JAM|Jamaica
JO|JOR|Jordan
JP|JPN|Japan
KE|KEN|Kenya
KG|KGZ|Kyrgyzstan
KH|KHM|Cambodia
KI|KIR|Kiribati
KM|COM|Comoros
KN|KNA|Saint Kitts and Nevis
KP|PRK|Korea, Democratic People's Republic of
KR|KOR|Korea, Republic of
KW|KWT|Kuwait
KY|CYM|Cayman Islands
KZ|KAZ|Kazakhstan
LA|LAO|Lao People's Democratic Republic
LB|LBN|Lebanon
LC|LCA|Saint Lucia
LI|LIE|Liechtenstein
LK|LKA|Sri Lanka
LR|LBR|Liberia
LS|LSO|Lesotho
LT|LTU|Lithuania
LU|LUX|Luxembourg
LV|LVA|Latvia
LY|LBY|Libya
MA|MAR|Morocco
MC|MCO|Monaco
MD|MDA|Moldova, Republic of
ME|MNE|Montenegro
MF|MAF|Saint Martin (French part)
MG|MDG|Madagascar
MH|MHL|Marshall Islands
MK|MKD|North Macedonia
ML|MLI|Mali
MM|MMR|Myanmar
MN|MNG|Mongolia
MO|MAC|Macao
MP|MNP|Northern Mariana Islands
MQ|MTQ|Martinique
MR|MRT|Mauritania
MS|MSR|Montserrat
MT|MLT|Malta
MU|MUS|Mauritius
MV|MDV|Maldives
MW|MWI|Malawi
MX|MEX|Mexico
MY|MYS|Malaysia
MZ|MOZ|Mozambique
NA|NAM|Namibia
NC|NCL|New Caledonia
NE|NER|Niger
NF|NFK|Norfolk Island
NG|NGA|Nigeria
NI|NIC|Nicaragua
NL|NLD|Netherlands
NO|NOR|Norway
NP|NPL|Nepal
NR|NRU|Nauru
NU|NIU|Niue
NZ|NZL|New Zealand
OM|OMN|Oman
PA|PAN|Panama
PE|PER|Peru
PF|PYF|French Polynesia
PG|PNG|Papua New Guinea
PH|PHL|Philippines
PK|PAK|Pakistan
PL|POL|Poland
PM|SPM|Saint Pierre and Miquelon
PN|PCN|Pitcairn
PR|PRI|Puerto Rico
PS|PSE|Palestine, State of
PT|PRT|Portugal
PW|PLW|Palau
PY|PRY|Paraguay
QA|QAT|Qatar
RE|REU|Reunion
RO|ROU|Romania
RS|SRB|Serbia
RU|RUS|Russian Federation
RW|RWA|Rwanda
SA|SAU|Saudi Arabia
SB|SLB|Solomon Islands
SC|SYC|Seychelles
SD|SDN|Sudan
SE|SWE|Sweden
SG|SGP|Singapore
SH|SHN|Saint Helena, Ascension and Tristan da Cunha
SI|SVN|Slovenia
SJ|SJM|Svalbard and Jan Mayen
SK|SVK|Slovakia
SL|SLE|Sierra Leone
SM|SMR|San Marino
SN|SEN|Senegal
SO|SOM|Somalia
SR|SUR|Suriname
SS|SSD|South Sudan
ST|STP|Sao Tome and Principe
SV|SLV|El Salvador
SX|SXM|Sint Maarten (Dutch part)
SY|SYR|Syrian Arab Republic
SZ|SWZ|Eswatini
TC|TCA|Turks and Caicos Islands
TD|TCD|Chad
TF|ATF|French Southern Territories
TG|TGO|Togo
TH|THA|Thailand
TJ|TJK|Tajikistan
TK|TKL|Tokelau
TL|TLS|Timor-Leste
TM|TKM|Turkmenistan
TN|TUN|Tunisia
TO|TON|Tonga
TR|TUR|Turkiye
TT|TTO|Trinidad and Tobago
TV|TUV|Tuvalu
TW|TWN|Taiwan, Province of China
TZ|TZA|Tanzania, United Republic of
UA|UKR|Ukraine
UG|UGA|Uganda
UM|UMI|United States Minor Outlying Islands
US|USA|United States
UY|URY|Uruguay
UZ|UZB|Uzbekistan
VA|VAT|Holy See (Vatican City State)
VC|VCT|Saint Vincent and the Grenadines
VE|VEN|Venezuela, Bolivarian Republic of
VG|VGB|Virgin Islands, British
VI|VIR|Virgin Islands, U.S.
VN|VNM|Viet Nam
VU|VUT|Vanuatu
WF|WLF|Wallis and Futuna
WS|WSM|Samoa
XK|XKX|Kosovo
YE|YEM|Yemen
YT|MYT|Mayotte
ZA|ZAF|South Africa
ZM|ZMB|Zambia
ZW|ZWE|Zimbabwe
"""

# Extra spellings -> alpha-2. Keys are written naturally; they are normalised on import.
_ALIASES: dict[str, str] = {
    # United States
    "United States of America": "US",
    "U.S.": "US",
    "U.S.A.": "US",
    "America": "US",
    "Vereinigte Staaten": "US",
    "Etats-Unis": "US",
    # United Kingdom
    "UK": "GB",
    "U.K.": "GB",
    "Great Britain": "GB",
    "Britain": "GB",
    "England": "GB",
    "Scotland": "GB",
    "Wales": "GB",
    "Northern Ireland": "GB",
    "United Kingdom of Great Britain and Northern Ireland": "GB",
    "Vereinigtes Konigreich": "GB",
    "Grossbritannien": "GB",
    # Native and common short names
    "Deutschland": "DE",
    "Federal Republic of Germany": "DE",
    "Bundesrepublik Deutschland": "DE",
    "Osterreich": "AT",
    "Oesterreich": "AT",
    "Schweiz": "CH",
    "Suisse": "CH",
    "Svizzera": "CH",
    "Espana": "ES",
    "Italia": "IT",
    "Nederland": "NL",
    "Holland": "NL",
    "Belgie": "BE",
    "Belgique": "BE",
    "Polska": "PL",
    "Sverige": "SE",
    "Norge": "NO",
    "Danmark": "DK",
    "Suomi": "FI",
    "Eire": "IE",
    "Republic of Ireland": "IE",
    "Brasil": "BR",
    "Turkey": "TR",
    "Hellas": "GR",
    "Ellada": "GR",
    "Czech Republic": "CZ",
    "Cesko": "CZ",
    "Slovak Republic": "SK",
    "Magyarorszag": "HU",
    "Hrvatska": "HR",
    "Russia": "RU",
    "South Korea": "KR",
    "Republic of Korea": "KR",
    "North Korea": "KP",
    "Vietnam": "VN",
    "Laos": "LA",
    "Iran": "IR",
    "Syria": "SY",
    "Bolivia": "BO",
    "Venezuela": "VE",
    "Tanzania": "TZ",
    "Moldova": "MD",
    "Macedonia": "MK",
    "Republic of North Macedonia": "MK",
    "Burma": "MM",
    "Swaziland": "SZ",
    "Cape Verde": "CV",
    "East Timor": "TL",
    "Ivory Coast": "CI",
    "Vatican": "VA",
    "Vatican City": "VA",
    "Holy See": "VA",
    "Palestine": "PS",
    "Taiwan": "TW",
    "Macau": "MO",
    "Brunei": "BN",
    "Micronesia": "FM",
    "Democratic Republic of the Congo": "CD",
    "DR Congo": "CD",
    "DRC": "CD",
    "Republic of the Congo": "CG",
    "Congo-Brazzaville": "CG",
    "UAE": "AE",
    "Emirates": "AE",
    "Saint Martin": "MF",
    "Sint Maarten": "SX",
    "Falkland Islands": "FK",
    "British Virgin Islands": "VG",
    "US Virgin Islands": "VI",
    "Reunion Island": "RE",
    "Nippon": "JP",
    "Mexico": "MX",
    "People's Republic of China": "CN",
    "PRC": "CN",
    "Bosnia": "BA",
    "Trinidad": "TT",
    "St Lucia": "LC",
    "St Kitts and Nevis": "KN",
    "St Vincent and the Grenadines": "VC",
}


def _normalise(text: str) -> str:
    """Case-, accent- and punctuation-insensitive key: 'Côte d’Ivoire' -> 'cote divoire'."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = plain.casefold().replace("ß", "ss")
    plain = re.sub(r"[.'’`]", "", plain)
    plain = re.sub(r"[^0-9a-z]+", " ", plain).strip()
    if plain.startswith("the "):
        plain = plain[4:]
    return plain


def _build() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    names: dict[str, str] = {}
    alpha3: dict[str, str] = {}
    lookup: dict[str, str] = {}
    for line in _TABLE.strip().splitlines():
        code, code3, name = line.split("|")
        names[code] = name
        alpha3[code] = code3
        lookup[_normalise(code)] = code
        lookup[_normalise(code3)] = code
        lookup[_normalise(name)] = code
        # "Korea, Republic of" style names: also accept "Republic of Korea".
        if ", " in name:
            head, tail = name.split(", ", 1)
            lookup.setdefault(_normalise(f"{tail} {head}"), code)
            if head not in ("Korea", "Congo", "Virgin Islands"):  # ambiguous without the tail
                lookup.setdefault(_normalise(head), code)
        if " (" in name:
            lookup.setdefault(_normalise(name.split(" (")[0]), code)
    for alias, code in _ALIASES.items():
        assert code in names, alias
        lookup[_normalise(alias)] = code
    return names, alpha3, lookup


COUNTRY_NAMES, ALPHA3, _LOOKUP = _build()
"""alpha-2 -> English short name; alpha-2 -> alpha-3."""


def country_code(value: str) -> str | None:
    """The ISO 3166-1 alpha-2 code for a country name, alias, alpha-2 or alpha-3 code; None if unknown."""
    return _LOOKUP.get(_normalise(value))
