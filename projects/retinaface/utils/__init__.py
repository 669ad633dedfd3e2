# Owned by the module author; imports register the modules.
