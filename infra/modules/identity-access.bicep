// Assigning one user-assigned identity that a pool's scale set carries (e.g. the kubelet's): ARM
// checks every write to a scale set model against the identities it references. The role is
// identity-role.bicep's, defined in the identity's resource group, and assigned at the identity
// only, so no other identity there can be handed to a scale set.

targetScope = 'resourceGroup'

@description('Object id of Poolkeeper\'s managed identity.')
param principalId string

@description('The user-assigned identity\'s name, in this resource group.')
param identityName string

// identity-role.bicep's id for its role: from the group's id lower-cased, as it names it.
var role = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(toLower(resourceGroup().id), 'Poolkeeper identity assignment'))

resource assigned 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(toLower(assigned.id), principalId, role)
  scope: assigned
  properties: {
    roleDefinitionId: role
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
