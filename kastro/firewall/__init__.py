"""The firewall role's controller side: policy → nftables ruleset compilation."""
