"""Following: a site mirror takes what a central one committed over HTTP (the centre's
read API, `api`; the site's verified, incremental pull, `pull`), with the bundle's
commit (bundle.commit): a bundle is the offline form of the same pull."""
