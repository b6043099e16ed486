// placeholder: implemented by the base helper
