output "vpc_id" {
  value = aws_vpc.this.id
}

output "data_subnet_ids" {
  description = "Subnets for databases and brokers (no route out of the VPC)."
  value       = [for s in aws_subnet.data : s.id]
}

output "data_cidr" {
  description = "Must equal the ipBlock in the k8s NetworkPolicies' egress rules."
  value       = local.data_cidr
}

output "cluster_name" {
  value = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  value = aws_eks_cluster.this.endpoint
}

output "node_security_group_id" {
  description = "The cluster security group, carried by nodes and by pods without a SecurityGroupPolicy."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "vpc_cidr" {
  value = aws_vpc.this.cidr_block
}

output "alarm_topic_arn" {
  description = "Every cell's alarms notify this topic (subscribe the on-call pager to it)."
  value       = aws_sns_topic.alarms.arn
}
