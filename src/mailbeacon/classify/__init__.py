"""Who fetched a pixel or a link: a pipeline of named rules over each hit, and the settling of
verdicts once later hits of the same message arrive."""
