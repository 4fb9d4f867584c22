"""``contimg-photometry db``: database maintenance."""

from __future__ import annotations

from dsa110_contimg.cli import common


def register(sub) -> None:
    p = sub.add_parser("db", help="database maintenance (schema upgrade)")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply schema migrations to the products and registry databases")
    common.add_db_options(up)
    up.set_defaults(func=upgrade)


def upgrade(args) -> int:
    from dsa110_contimg.store.engine import open_products_db, open_registry_db, upgrade as do_upgrade
    from dsa110_contimg.store.urls import mask_url

    for which, target, opener in (("products", common.products_db(args), open_products_db),
                                  ("registry", common.registry_db(args), open_registry_db)):
        db = common.creating(opener, target, migrate=False)
        head = do_upgrade(db.engine, which)
        print(f"{which} database {mask_url(target)}: at revision {head}")
        db.dispose()
    return 0
