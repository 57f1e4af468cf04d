# packaging tests
