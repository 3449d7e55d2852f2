"""Optional integrations with other frameworks. Each lives in its own subpackage and imports its
framework only when imported itself: `import polyglm` never pulls LangChain in."""
