"""Config, profiles, model preparation and loading. Import submodules directly; nothing loads here."""
