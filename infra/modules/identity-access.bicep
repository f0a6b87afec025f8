// Assigning one user-assigned identity that a pool's scale set carries (e.g. the kubelet's): ARM
// checks every write to a scale set model against the identities it references. A custom role
// with that one action, defined in the identity's resource group and assigned at the identity
// only, so no other identity there can be handed to a scale set.

targetScope = 'resourceGroup'

@description('Object id of Poolkeeper\'s managed identity.')
param principalId string

@description('The user-assigned identity\'s name, in this resource group.')
param identityName string

@description('The role\'s actions (main.bicep identityActions).')
param actions array

var group = toLower(resourceGroup().id)

resource assigned 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(group, 'Poolkeeper identity assignment')
  properties: {
    roleName: 'Poolkeeper identity assignment (${resourceGroup().name}, ${subscription().subscriptionId})'
    description: 'Writes to the pools\' scale sets carry the user-assigned identities their models reference.'
    type: 'CustomRole'
    permissions: [ { actions: actions, notActions: [] } ]
    assignableScopes: [ resourceGroup().id ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(toLower(assigned.id), principalId, role.id)
  scope: assigned
  properties: {
    roleDefinitionId: role.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
